"""Builders for test events (client-side form, as an agent or SDK would send them)."""

from __future__ import annotations

import itertools
import time
from typing import Any

_seq = itertools.count()


def now_us() -> int:
    return time.time_ns() // 1000


def event(**fields: Any) -> dict[str, Any]:
    n = next(_seq)
    base: dict[str, Any] = {
        "id": f"ev-{n}-{time.monotonic_ns()}",
        "message": f"test event {n}",
        "level": "info",
        "host": "web-1",
        "service": "api",
    }
    base.update(fields)
    return base


def request_events(
    request_id: str, hosts: list[str], user_id: str | None = None, t0: int | None = None, **fields: Any
) -> list[dict[str, Any]]:
    """One request crossing `hosts` in order, 1 ms apart."""
    t0 = t0 if t0 is not None else now_us() - 60_000_000
    out = []
    for i, h in enumerate(hosts):
        e = event(request_id=request_id, host=h, ts=t0 + i * 1000, message=f"{request_id} step {i} on {h}", **fields)
        if user_id is not None:
            e["user_id"] = user_id
        out.append(e)
    return out

"""Reading checks back from any `Store`: the stored definitions, the last result, and the
status and uptime percentages that `GET /api/v1/checks` reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from obshub.errors import FieldError
from obshub.events import format_ts
from obshub.store.base import Project, SearchRequest, Store
from obshub.store.querylang import And, Field, Node
from obshub.uptime.config import FIELDS, parse_check
from obshub.uptime.model import Check, public_target

__all__ = ["check_status", "last_state", "list_checks", "project_checks", "results_query", "stored_checks"]

_DEFS_CAP = 10_000  # definition events read per project (one per POST/DELETE/refresh)
_WINDOWS_S = (("uptime_24h", 86_400), ("uptime_7d", 7 * 86_400), ("uptime_30d", 30 * 86_400))


def stored_checks(store: Store, project_id: int, project_name: str) -> dict[str, Check]:
    """The project's API-defined checks: newest definition per name, tombstones dropped."""
    query = And((Field("kind", "=", "check"), Field("attrs.definition", "=", "true")))
    seen: set[str] = set()
    out: dict[str, Check] = {}
    after = None
    read = 0
    while read < _DEFS_CAP:
        page = store.search(project_id, SearchRequest(query, None, None, 1000, after, False))
        for ev in page:
            name = ev.get("name")
            if ev.get("received_at") != 0 or not name or name in seen:
                continue  # not written by a hub (obshub/uptime/__init__.py), or an older version
            seen.add(name)
            attrs = ev.get("attrs") or {}
            if attrs.get("deleted"):
                continue
            raw = {k: attrs[k] for k in FIELDS if k in attrs and k != "project"}
            raw["name"] = name
            try:
                check = parse_check(raw, "api", project_name)
            except FieldError:
                continue  # written under other rules (a later version); never probe it half-read
            out[name] = replace(check, defined_at=ev["ts"])
        read += len(page)
        if len(page) < 1000:
            break
        after = (page[-1]["ts"], page[-1]["id"])
    return out


def project_checks(store: Store, project: Project, config: Sequence[Check]) -> list[Check]:
    """Config-file checks of this project, then its stored ones not shadowed by a config name."""
    mine = [c for c in config if c.project == project.name]
    names = {c.name for c in mine}
    stored = stored_checks(store, project.id, project.name)
    return mine + sorted((c for n, c in stored.items() if n not in names), key=lambda c: c.name)


def results_query(name: str) -> Node:
    """Every probe result of a check (definitions carry no `attrs.up`)."""
    return And((Field("kind", "=", "check"), Field("name", "=", name, True), Field("attrs.up", "exists")))


def check_status(store: Store, project_id: int, check: Check, now_us: int) -> dict[str, Any]:
    results = results_query(check.name)
    latest = store.search(project_id, SearchRequest(results, None, None, 1))
    last = latest[0] if latest else None
    attrs = last["attrs"] if last else {}
    out: dict[str, Any] = {
        "name": check.name,
        "target": public_target(check.target),
        "up": bool(attrs["up"]) if last else None,
        "last_checked": format_ts(last["ts"]) if last else None,
        "latency_ms": attrs.get("latency_ms"),
        "status": attrs.get("status"),
        "message": last["message"] if last else None,
    }
    for key, span_s in _WINDOWS_S:
        start = now_us - span_s * 1_000_000
        total = store.count(project_id, results, start, now_us + 1) if last else 0
        if not total:
            out[key] = None
            continue
        up = store.count(project_id, And((results, Field("attrs.up", "=", "true"))), start, now_us + 1)
        out[key] = round(100.0 * up / total, 3)
    out.update(
        interval_s=check.interval_s,
        timeout_s=check.timeout_s,
        expect_status=list(check.expect_status) or None,
        expect_body=check.expect_body,
        source=check.source,
        public=check.public,
        tls_expires_at=format_ts(attrs["tls_expires_at"]) if isinstance(attrs.get("tls_expires_at"), int) else None,
    )
    return out


def list_checks(store: Store, project: Project, config: Sequence[Check], now_us: int) -> dict[str, Any]:
    return {"checks": [check_status(store, project.id, c, now_us) for c in project_checks(store, project, config)]}


def last_state(store: Store, project_id: int, check: Check, before_us: int) -> bool | None:
    """`attrs.up` of the newest stored result before `before_us`, None when there is none."""
    found = store.search(project_id, SearchRequest(results_query(check.name), None, before_us, 1))
    return bool(found[0]["attrs"].get("up")) if found else None

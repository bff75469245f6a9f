"""Time arguments of the query API: RFC 3339, epoch numbers, or relative to now (`-15m`, `-24h`,
`-7d`, `now`). Relative forms are what people type; absolute forms are what links carry."""

from __future__ import annotations

import re

from obshub import events
from obshub.errors import FieldError, QueryError

__all__ = ["parse_interval", "parse_time"]

_REL = re.compile(r"^(?:now)?-(\d+)(s|m|h|d|w)$")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}


def parse_time(value: str | None, name: str, now_us: int | None = None) -> int | None:
    """µs since epoch, or None when absent. Raises QueryError naming the parameter."""
    if value is None or value == "":
        return None
    now = events.now_us() if now_us is None else now_us
    v = value.strip()
    if v == "now":
        return now
    m = _REL.match(v)
    if m:
        return now - int(m.group(1)) * _UNIT_US[m.group(2)]
    try:
        return events.parse_ts(v, name)
    except FieldError:
        raise QueryError(
            f"{name}: {value!r} is not RFC 3339, an epoch number or relative like -15m, -24h, -7d"
        ) from None


def parse_interval(value: str | None) -> int:
    """`hour` | `day` (contract) or a duration like `5m`, in µs."""
    v = (value or "hour").strip()
    if v == "hour":
        return _UNIT_US["h"]
    if v == "day":
        return _UNIT_US["d"]
    m = re.fullmatch(r"(\d+)(s|m|h|d|w)", v)
    if m and int(m.group(1)) > 0:
        return int(m.group(1)) * _UNIT_US[m.group(2)]
    raise QueryError(f"interval: {value!r} is not hour, day or a duration like 5m")

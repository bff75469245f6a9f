"""Time arguments of the query API: RFC 3339, epoch numbers, or relative to now (`-15m`, `-24h`,
`-7d`, `now`). Relative forms are what people type; absolute forms are what links carry.

Every value is checked to land in 1970..2200 (the range event times have, obshub/events.py) and
an interval to be at most MAX_INTERVAL: an unchecked `from=-99999999999999999999d` reached the
store as an integer past 64 bits (a 500), and so did a huge `interval`."""

from __future__ import annotations

import re

from obshub import events
from obshub.errors import FieldError, QueryError

__all__ = ["MAX_INTERVAL_US", "parse_interval", "parse_time"]

# ASCII digits only (`\d` also takes other scripts' digits), and few of them: Python refuses to
# convert more than 4,300 digits to an int (a ValueError where none was expected: a 500).
_REL = re.compile(r"(?:now)?-([0-9]+)(s|m|h|d|w)", re.ASCII)
_DURATION = re.compile(r"([0-9]{1,12})(s|m|h|d|w)", re.ASCII)
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}
_MAX_US = 7_258_118_400_000_000  # 2200-01-01: the latest event time (obshub/events.py)
MAX_INTERVAL_US = 366 * _UNIT_US["d"]  # one bucket of a series: a year at most
_FORMS = "is not RFC 3339, an epoch number or relative like -15m, -24h, -7d"


def parse_time(value: str | None, name: str, now_us: int | None = None) -> int | None:
    """µs since epoch, or None when absent. Raises QueryError naming the parameter."""
    if value is None or value == "":
        return None
    now = events.now_us() if now_us is None else now_us
    v = value.strip()
    if v == "now":
        return now
    m = _REL.fullmatch(v)
    if m:
        n = m.group(1)
        us = -1 if len(n) > 12 else now - int(n) * _UNIT_US[m.group(2)]
        if us < 0:
            raise QueryError(f"{name}: {value[:40]!r} reaches before 1970-01-01")
        return us
    if len(v) > 64:  # no time is written longer (RFC 3339 with nanoseconds and offset: 35)
        raise QueryError(f"{name}: {value[:40]!r}... {_FORMS}")
    try:
        us = events.parse_ts(v, name)
    except (FieldError, ValueError):
        raise QueryError(f"{name}: {value!r} {_FORMS}") from None
    if not 0 <= us <= _MAX_US:
        raise QueryError(f"{name}: {value!r} is outside 1970..2200")
    return us


def parse_interval(value: str | None) -> int:
    """`hour` | `day` (contract) or a duration like `5m`, in µs, up to MAX_INTERVAL_US."""
    v = (value or "hour").strip()
    if v == "hour":
        return _UNIT_US["h"]
    if v == "day":
        return _UNIT_US["d"]
    m = _DURATION.fullmatch(v)
    if m and int(m.group(1)) > 0:
        us = int(m.group(1)) * _UNIT_US[m.group(2)]
        if us > MAX_INTERVAL_US:
            raise QueryError(f"interval: {v[:40]!r} is longer than the maximum of 366d")
        return us
    raise QueryError(f"interval: {v[:40]!r} is not hour, day or a duration like 5m")

"""Timestamp text -> RFC 3339 string (or epoch number), cached.

`strptime` costs ~8 µs; log lines share their timestamp with their neighbours (same second, often
the same millisecond), so a small dict cache makes the common case one lookup. Naive times are
read in the configured zone (default: the agent's local zone). Formats without a year (syslog,
Android logcat) get the current year, or last year when that would put the event over a day in
the future (a December line read in January).
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

__all__ = ["KNOWN_FORMATS", "TimestampParser"]

# Tried in order when no explicit format is configured; the first that parses a value is then
# tried first for the next one (a file keeps one format).
KNOWN_FORMATS = (
    "%a %b %d %H:%M:%S %Y",  # apache 2.2 error log
    "%a %b %d %H:%M:%S.%f %Y",  # apache 2.4 error log
    "%b %d %H:%M:%S",  # syslog RFC 3164 (no year)
    "%d/%b/%Y:%H:%M:%S %z",  # common/combined access log
    "%y%m%d %H%M%S",  # HDFS / hadoop 1
    "%m-%d %H:%M:%S.%f",  # android logcat (no year)
    "%Y%m%d-%H:%M:%S:%f",  # HealthApp style
    "%m.%d %H:%M:%S",  # Proxifier (no year)
    "%Y/%m/%d %H:%M:%S",
    "%d-%b-%Y %H:%M:%S",
)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?\s*(?:Z|z|[+-]\d{2}:?\d{2})?$")
_EPOCH = re.compile(r"^\d{9,19}(?:\.\d+)?$")
_CACHE_MAX = 4096


def _local_zone() -> tzinfo:
    return datetime.now().astimezone().tzinfo or UTC


class TimestampParser:
    """Callable: text -> RFC 3339 string, an epoch number, or None when unparseable."""

    def __init__(self, fmt: str | None = None, tz: str | None = None, now: Callable[[], float] = time.time) -> None:
        if tz:
            from zoneinfo import ZoneInfo

            self._tz: tzinfo = ZoneInfo(tz)
        else:
            self._tz = _local_zone()
        self._formats = [fmt] if fmt else list(KNOWN_FORMATS)
        self._explicit = fmt is not None
        self._cache: dict[str, str | float | None] = {}
        self._now = now

    def __call__(self, text: str) -> str | float | None:
        r = self._cache.get(text, _MISS)
        if r is not _MISS:
            return r
        r = self._parse(text.strip())
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[text] = r
        return r

    def _parse(self, s: str) -> str | float | None:
        if not s:
            return None
        if not self._explicit:
            if _EPOCH.match(s):
                return float(s) if "." in s else int(s)  # the hub scales s/ms/µs/ns by magnitude
            if _ISO.match(s):
                try:
                    dt = datetime.fromisoformat(s.replace(",", ".").replace(" ", "T", 1).replace(" ", ""))
                except ValueError:
                    dt = None
                if dt is not None:
                    return self._finish(dt)
        for i, fmt in enumerate(self._formats):
            dt = self._strptime(s, fmt)
            if dt is not None:
                if i:  # move the winning format to the front
                    self._formats.insert(0, self._formats.pop(i))
                return self._finish(dt, yearless="%Y" not in fmt and "%y" not in fmt)
        return None

    def _strptime(self, s: str, fmt: str) -> datetime | None:
        try:
            if "%Y" in fmt or "%y" in fmt:
                return datetime.strptime(s, fmt)
            # inject the year first: strptime defaults to 1900 where Feb 29 does not exist
            year = datetime.fromtimestamp(self._now(), self._tz).year
            return datetime.strptime(f"{year} {s}", "%Y " + fmt)
        except ValueError:
            return None

    def _finish(self, dt: datetime, yearless: bool = False) -> str:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self._tz)
        if yearless and dt.timestamp() > self._now() + 86400:
            try:
                dt = dt.replace(year=dt.year - 1)
            except ValueError:  # Feb 29 -> no such day last year
                dt = dt - timedelta(days=365)
        return dt.isoformat()


class _Miss(enum.Enum):  # a cache-miss sentinel that mypy can narrow away (`is not _MISS`)
    MISS = 0


_MISS: Final = _Miss.MISS

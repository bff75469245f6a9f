"""Per-host clock-offset estimates, from the agent's wall clock sent with each batch.

An agent stamps `X-Obshub-Sent-At` (its clock, epoch seconds) on every request; the hub notes
its own receive time. sent - received = host offset - network/queue delay. Delay is never
negative, so over a window the *largest* sample is the least-delayed one and the best estimate
(the NTP "minimum delay" filter). The window forgets old samples so a corrected clock is seen
within minutes.

Used on both sides of the store, so it lives beside them rather than in digest/ (per-event
work): native ingest observes (`Hub.observe_clock`, per batch carrying the header), the trace
and timeline views correct times (`query/search.py`, `web/trace_view.py`, `web/pages_trace.py`,
the `skew_ms` of the JSON API).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SkewEstimator", "corrected_order", "corrected_ts", "parse_sent_at"]

WINDOW_S = 600.0  # samples older than this are forgotten: a host fixed by NTP recovers in 10 min
MAX_SAMPLES = 64  # per host; one batch per second gives a minute of best-of filtering
MIN_SKEW_US = 250_000  # below this an offset is noise (delay jitter); report 0


def parse_sent_at(value: str | None) -> int | None:
    """Header value (epoch seconds, float) -> µs, or None when absent or unusable."""
    if not value:
        return None
    try:
        sec = float(value)
    except ValueError:
        return None
    if not 0 < sec < 7_258_118_400:
        return None
    return int(sec * 1_000_000)


@dataclass
class SkewEstimator:
    _samples: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, host: str, sent_at_us: int, received_at_us: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            dq = self._samples.setdefault(host, deque(maxlen=MAX_SAMPLES))
            dq.append((now, sent_at_us - received_at_us))

    def offset_us(self, host: str, now: float | None = None) -> int:
        """Estimated (host clock - hub clock) in µs; 0 when unknown or within noise."""
        now = time.monotonic() if now is None else now
        with self._lock:
            dq = self._samples.get(host)
            if not dq:
                return 0
            while dq and now - dq[0][0] > WINDOW_S and len(dq) > 1:
                dq.popleft()
            best = max(off for _, off in dq)
        return best if abs(best) >= MIN_SKEW_US else 0

    def offsets(self, hosts: list[str]) -> dict[str, int]:
        return {h: self.offset_us(h) for h in hosts}


def corrected_ts(ts_us: int, host: str | None, offsets: Mapping[str, int]) -> int:
    """Event time on the hub's clock: the host's clock minus its estimated offset."""
    return ts_us - offsets.get(host or "", 0)


def corrected_order(events: Sequence[Mapping[str, Any]], offsets: Mapping[str, int]) -> list[Mapping[str, Any]]:
    """Events (with `ts` in µs and `host`) in the order they happened by the hub's clock. Ties keep
    their input order (the store's (ts, id) order), so a host's own lines never swap."""
    return sorted(events, key=lambda e: corrected_ts(e["ts"], e.get("host"), offsets))

"""Per-host clock-offset estimates, from the agent's wall clock sent with each batch.

An agent stamps `X-Obshub-Sent-At` (its clock, epoch seconds) on every request; the hub notes
its own receive time. sent - received = host offset - network/queue delay. Delay is never
negative, so over a window the *largest* sample is the least-delayed one and the best estimate
(the NTP "minimum delay" filter). The window forgets old samples so a corrected clock is seen
within minutes.

Estimates are per (project, host): host names are whatever a client sends, so project A's
`web-b1` is not project B's, and A's clock never reorders B's traces. The memory is bounded
whatever clients send: per key the best sample of each minute of the window (at most `BUCKETS`;
host names up to 255 characters), and at most `max_keys` keys, the ones heard from least recently
forgotten first (setting `skew_hosts`). Measured: 0.4 KiB a key after one batch, 1.6 KiB with a
full window, so the default 10,000 keys hold 4-16 MiB. A forgotten host's events are shown on
their raw time until its next batch.

Used on both sides of the store, so it lives beside them rather than in digest/ (per-event
work): native ingest observes (`Hub.observe_clock`, per batch carrying the header), the trace
and timeline views correct times (`query/search.py`, `web/trace_view.py`, `web/pages_trace.py`,
the `skew_ms` of the JSON API).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["DEFAULT_MAX_KEYS", "SkewEstimator", "corrected_order", "corrected_ts", "parse_sent_at"]

WINDOW_S = 600.0  # samples older than this are forgotten: a host fixed by NTP recovers in 10 min
BUCKET_S = 60.0  # one best sample kept per minute of the window...
BUCKETS = int(WINDOW_S // BUCKET_S) + 1  # ...so 11 buckets always cover the window
MIN_SKEW_US = 250_000  # below this an offset is noise (delay jitter); report 0
DEFAULT_MAX_KEYS = 10_000  # (project, host) pairs remembered (setting `skew_hosts`)
MAX_HOST_CHARS = 255  # a DNS name's maximum; a longer `host` gets no estimate (bounds a key's size)


def parse_sent_at(value: str | None) -> int | None:
    """Header value (epoch seconds, float) -> µs, or None when absent or unusable."""
    if not value or len(value) > 40:
        return None
    try:
        sec = float(value)
    except ValueError:
        return None
    if not 0 < sec < 7_258_118_400:
        return None
    return int(sec * 1_000_000)


class SkewEstimator:
    """Clock offsets of the hosts that sent `X-Obshub-Sent-At`, per project. Thread-safe."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max(0, max_keys)  # 0: remember none (no correction)
        self._lock = threading.Lock()
        # (project, host) -> [(bucket start, best offset in µs)], oldest bucket first (a list:
        # a deque's first block alone is ~600 bytes). LRU order: the least recently observed
        # key first, so it is the one dropped at `max_keys`.
        self._keys: OrderedDict[tuple[int, str], list[tuple[float, int]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def observe(
        self, project_id: int, host: str, sent_at_us: int, received_at_us: int, now: float | None = None
    ) -> None:
        if not self.max_keys or len(host) > MAX_HOST_CHARS:
            return
        now = time.monotonic() if now is None else now
        offset = sent_at_us - received_at_us
        key = (project_id, host)
        with self._lock:
            buckets = self._keys.get(key)
            if buckets is None:
                buckets = self._keys[key] = []
                if len(self._keys) > self.max_keys:
                    self._keys.popitem(last=False)
            else:
                self._keys.move_to_end(key)
            if buckets and now - buckets[-1][0] < BUCKET_S:
                start, best = buckets[-1]
                if offset > best:
                    buckets[-1] = (start, offset)
            else:
                buckets.append((now, offset))
                if len(buckets) > BUCKETS:
                    del buckets[0]

    def offset_us(self, project_id: int, host: str, now: float | None = None) -> int:
        """Estimated (host clock - hub clock) in µs; 0 when unknown or within noise. The newest
        sample is kept past the window: old traces of a host that went quiet stay corrected."""
        now = time.monotonic() if now is None else now
        with self._lock:
            buckets = self._keys.get((project_id, host))
            if not buckets:
                return 0
            while len(buckets) > 1 and now - buckets[0][0] > WINDOW_S:
                del buckets[0]
            best = max(off for _, off in buckets)
        return best if abs(best) >= MIN_SKEW_US else 0

    def offsets(self, project_id: int, hosts: Iterable[str]) -> dict[str, int]:
        """`offset_us` of each host of the project."""
        return {h: self.offset_us(project_id, h) for h in hosts}


def corrected_ts(ts_us: int, host: str | None, offsets: Mapping[str, int]) -> int:
    """Event time on the hub's clock: the host's clock minus its estimated offset."""
    return ts_us - offsets.get(host or "", 0)


def corrected_order(events: Sequence[Mapping[str, Any]], offsets: Mapping[str, int]) -> list[Mapping[str, Any]]:
    """Events (with `ts` in µs and `host`) in the order they happened by the hub's clock. Ties keep
    their input order (the store's (ts, id) order), so a host's own lines never swap."""
    return sorted(events, key=lambda e: corrected_ts(e["ts"], e.get("host"), offsets))

"""The jobs' lease: which one of the hubs on a store runs the scheduled jobs (uptime probes,
retention and rollover, alert evaluation), so a cluster probes, evaluates and notifies once, not
once per hub.

The lease is one `Record` of the store (kind "lease", key the lease's name):
`{holder, expires_at, acquired_at}` (µs since the epoch). Every hub runs a `Lease` that, in its
own thread, every `period_s / 3`:
- renews the record when it holds it (compare-and-set on the version it read),
- takes it when it is absent, released or expired (the same compare-and-set: of several hubs
  trying at once exactly one wins, the others get Conflict),
- else waits, waking when the holder's lease would expire.

Safety: a holder stops considering itself the holder (`held()` false) as soon as a renewal fails
(store outage, lost race) and, even with no answer at all (a hung store), at `period_s - margin`
after its last successful renewal began, on its own monotonic clock. A contender takes the lease
only when its wall clock passes `expires_at`, which the holder computed from its wall clock. So
two hubs never both hold it as long as the replicas' clocks agree within the margin (`period_s /
5`: 3 s at the default lease_s = 15 s; NTP keeps them within milliseconds). A hub whose lease
record was written "in the future" by more than the margin logs that the clocks differ.

Liveness: a killed holder is replaced one lease period after its last renewal at most (a
contender wakes at the expiry); a hub shutting down releases the lease (`release`: expiry set to
now), so a rolling restart hands over at the next contender's step (`period_s / 3`).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import structlog

from obshub.errors import Conflict, StoreError
from obshub.events import format_ts, now_us
from obshub.outage import OutageLog
from obshub.store.base import Record, Store

__all__ = ["KIND", "Lease", "LeaseState", "holder_id", "leader_only"]

log = structlog.get_logger("obshub.jobs")

KIND = "lease"  # Record kind; the key is the lease's name ("jobs")
P = ParamSpec("P")
T = TypeVar("T")


def holder_id() -> str:
    """Unique per process: host name, pid, and 32 random bits (a pid reused after a restart, or
    the same pid in two containers, is still another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class LeaseState:
    """What this hub last read or wrote of the lease record (for status and logs)."""

    holder: str | None
    expires_at: int  # µs, holder's wall clock
    acquired_at: int  # µs, when the holder took it

    def public(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "expires_at": format_ts(self.expires_at) if self.expires_at else None,
            "acquired_at": format_ts(self.acquired_at) if self.acquired_at else None,
        }


def _state(rec: Record | None) -> LeaseState:
    if rec is None:
        return LeaseState(None, 0, 0)
    v = rec.value
    holder = v.get("holder")
    return LeaseState(
        holder if isinstance(holder, str) else None, int(v.get("expires_at") or 0), int(v.get("acquired_at") or 0)
    )


class Lease:
    """One hub's side of a lease. `held()` says whether jobs may run here now; `term` grows each
    time this hub takes the lease from another holder (or creates it), and `previous_until_us`
    says until when the previous holder's jobs may have run (its expiry or release, plus the
    clock margin; 0 when there was none), so a job taking over can tell which of its periods
    the previous holder already did (obshub/uptime/scheduling.py)."""

    def __init__(self, store: Store, name: str = "jobs", holder: str | None = None, period_s: float = 15.0) -> None:
        if not period_s > 0:
            raise ValueError(f"lease period must be positive, got {period_s}")
        self.store = store
        self.name = name
        self.holder = holder or holder_id()
        self.period_s = float(period_s)
        self.margin_s = self.period_s / 5  # how far apart replicas' clocks may be (module doc)
        self._lock = threading.Lock()
        self._valid_until = 0.0  # monotonic; held while now is before it
        self._holding = False  # what the last step concluded (for the gain/loss log lines)
        self._version = 0  # of the record as this hub last wrote it (while holding)
        self._seen = LeaseState(None, 0, 0)
        self._term = 0
        self._previous_until_us = 0
        self._skew_warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = OutageLog(log, "jobs lease: store unavailable; not running jobs")

    # -- what jobs ask -------------------------------------------------------------------------
    def held(self) -> bool:
        """True while this hub holds the lease: jobs may run here now."""
        with self._lock:
            return time.monotonic() < self._valid_until

    @property
    def term(self) -> int:
        with self._lock:
            return self._term

    @property
    def previous_until_us(self) -> int:
        with self._lock:
            return self._previous_until_us

    def status(self) -> dict[str, Any]:
        """The lease as this hub last saw it (at most `period_s / 3` old) and whether it is ours."""
        with self._lock:
            seen = self._seen
        return {"name": self.name, "held": self.held(), "this_hub": self.holder, **seen.public()}

    # -- renewing ------------------------------------------------------------------------------
    def step(self) -> float:
        """One renewal or attempt to take the lease; returns the seconds until the next one."""
        every = self.period_s / 3
        started = time.monotonic()
        now = now_us()
        try:
            rec = self.store.get_record(KIND, self.name)
            seen = _state(rec)
            self._check_clock(rec, now)
            if rec is not None and seen.holder == self.holder:
                # Ours: renew it. Also after a failed renewal (or one whose write landed although
                # its answer was lost): the holder is still us, so nobody else took it meanwhile,
                # and the compare-and-set fails if somebody takes it now.
                self._write(rec.version, now, seen.acquired_at or now, started)
            elif rec is None or seen.expires_at <= now:
                self._write(rec.version if rec else 0, now, now, started, previous=seen)
            else:
                self._lost(f"held by {seen.holder}", seen)
                wake = (seen.expires_at - now) / 1e6 + 0.01
                return max(0.05, min(every, wake))
        except Conflict:
            self._lost("another hub took it", None)
        except StoreError as e:
            self._outage.failed(str(e))
            self._lost(f"store: {e}", None)
            return every
        self._outage.ok()
        return every

    def _write(
        self,
        version: int,
        now: int,
        acquired_at: int,
        started: float,
        previous: LeaseState | None = None,
    ) -> None:
        value = {"holder": self.holder, "expires_at": now + int(self.period_s * 1e6), "acquired_at": acquired_at}
        rec = self.store.put_record(KIND, self.name, value, version=version)
        with self._lock:
            gained = not self._holding
            self._holding = True
            self._version = rec.version
            self._seen = _state(rec)
            self._valid_until = started + self.period_s - self.margin_s
            if previous is not None:  # taken from another holder (or created): a new term
                self._term += 1
                ended = previous.expires_at
                self._previous_until_us = ended + int(self.margin_s * 1e6) if ended else 0
        if gained:
            log.info(
                "jobs lease gained: this hub runs the jobs",
                lease=self.name,
                holder=self.holder,
                previous=previous.holder if previous else self.holder,
                period_s=self.period_s,
            )

    def _lost(self, why: str, seen: LeaseState | None) -> None:
        with self._lock:
            was = self._holding
            self._holding = False
            self._valid_until = 0.0
            if seen is not None:
                self._seen = seen
        if was:
            log.warning("jobs lease lost: this hub stops running jobs", lease=self.name, holder=self.holder, reason=why)

    def _check_clock(self, rec: Record | None, now: int) -> None:
        if rec is None or self._skew_warned or rec.updated_at <= now + int(self.margin_s * 1e6):
            return
        self._skew_warned = True
        log.warning(
            "jobs lease: written in this hub's future; the replicas' clocks differ by more than the lease's margin",
            lease=self.name,
            ahead_s=round((rec.updated_at - now) / 1e6, 3),
            margin_s=self.margin_s,
        )

    # -- the thread ----------------------------------------------------------------------------
    def start(self) -> Lease:
        """Take or renew once now (a lone hub runs its jobs from its first tick), then keep
        doing it in a daemon thread."""
        delay = self.step()
        self._thread = threading.Thread(target=self._run, args=(delay,), name=f"obshub-lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self, delay: float) -> None:
        while not self._stop.wait(delay):
            try:
                delay = self.step()
            except Exception as e:  # a bug or a record no hub wrote: never end the thread silently
                log.exception("jobs lease: renewal failed", lease=self.name)
                self._lost(f"error: {e!r}", None)
                delay = self.period_s / 3

    def release(self, timeout_s: float = 5.0) -> None:
        """Stop renewing and hand the lease over at once: its expiry is set to now, so a
        contender takes it at its next step instead of waiting out the period. Errors are
        logged, never raised (shutdown goes on; the lease then expires by itself)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            holding, version = self._holding, self._version
            self._holding = False
            self._valid_until = 0.0
        if not holding:
            return
        try:
            rec = self.store.get_record(KIND, self.name)
            if rec is None or rec.version != version or _state(rec).holder != self.holder:
                return
            value = {**rec.value, "expires_at": now_us()}
            self.store.put_record(KIND, self.name, value, version=rec.version)
        except (Conflict, StoreError) as e:
            log.warning("jobs lease: not released; it expires by itself", lease=self.name, error=str(e))
            return
        log.info("jobs lease released", lease=self.name, holder=self.holder)


def leader_only(lease: Lease, fn: Callable[P, T]) -> Callable[P, T | None]:
    """`fn` run only while this hub holds `lease` (else None): how a scheduler job runs once per
    cluster. A run that started while held goes on to its end."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T | None:
        if not lease.held():
            return None
        return fn(*args, **kwargs)

    return run

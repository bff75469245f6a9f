"""Uptime probes: every check is probed once per interval and each result stored as an event.

One scheduler job (`tick`, every second) finds the checks whose current slot has not been
probed by this process yet and runs their probes in a small thread pool, so a slow target never
delays another check. A slot is `floor((t - offset) / interval)`, with a fixed per-check offset
(`Check.offset_s`), and the result's id is `check:<project_id>:<name>:<slot>`.

Several replicas: only the hub holding the jobs' lease probes (obshub/jobs/lease.py, `Turn`
here), so a target sees one probe per interval from the whole cluster. A hub that takes the lease
over skips the current slot of each check when it opened before the previous holder's lease
ended (that holder may have probed it: a takeover may miss a slot, never probe one twice), and
forgets its own memory of the checks' states (the previous holder probed since). Results keep
their slot-derived ids and the store writes "create if absent", so a slot is stored once even
if a probe started before a handover finished after it.

A result is an ordinary event (`kind=check`, `service=obshub-uptime`), stored through the ingest
pipeline like every event. Its level says what changed, so a check failing every 5 s does not
flood `level:error` (docs/uptime.md): `error` when the check goes down (or is down at its first
result), `warning` while it stays down, `info` when it is up (`attrs.changed` marks the first
result of each state). Never `kind=error`: a down check is no error occurrence and no group.
The previous state is this hub's memory of its own probes, read from the store once per check
after a start (one search per check, not one per probe: see DEFS_TTL_S for why).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol

import structlog
from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN, SchedulerEvent
from apscheduler.schedulers.base import BaseScheduler

from obshub.digest import Scrubber
from obshub.errors import StoreError
from obshub.events import now_us
from obshub.outage import OutageLog
from obshub.settings import Settings
from obshub.store.base import Project, Store
from obshub.telemetry import Telemetry
from obshub.uptime.config import config_checks
from obshub.uptime.model import Check
from obshub.uptime.network import NetworkPolicy
from obshub.uptime.pool import CATCH_UP, NOW, ProbePool
from obshub.uptime.probes import probe
from obshub.uptime.queries import last_state, stored_checks
from obshub.uptime.writes import record, write_definition

__all__ = ["DEFS_TTL_S", "TICK_S", "HubParts", "Turn", "Uptime", "register", "run_all"]

log = structlog.get_logger("obshub.uptime")

TICK_S = 1  # slot resolution; probes start at most ~1 s after their slot opens
# How long the list of checks is cached. The hub that takes a POST or DELETE drops its cache at
# once (`invalidate`); other replicas see the change within this. Definitions are events, so a
# read searches the events stream: done every 5 s it kept OpenSearch from ever letting the
# stream's shards go search-idle (no scheduled refresh while nobody searches). Measured on a
# steady 3,000 events/s that nobody searched, 3 alternating pairs: 96-99 refreshes and 10-11
# merges per 90 s against 2 and 0, and the node's CPU per event +7%, +27%, +46%.
DEFS_TTL_S = 120.0
# A record every POST/DELETE of a check bumps (through any hub): the hub that probes reads it
# each tick (one GET of a small document, no search) and re-reads the definitions when it moved,
# so a check posted to any hub is probed within about a second.
CHANGED = ("uptime", "definitions")
# Another hub's definition may not be searchable here yet when its announcement is (OpenSearch
# makes writes searchable at the next refresh, every second): after a change, read once more then.
SETTLE_S = 2.0
MAX_PARALLEL = 16  # probes in flight per hub at least; each waits on the network, not the CPU
# The pool grows to 2 s worth of probes (checks/s x 2: a slow or timing-out target holds a thread
# while others are due), up to this: 10,000 checks at 60 s is 167 probes/s.
MAX_THREADS = 128


class HubParts(Protocol):
    """What the runner uses of its hub (`obshub.hub.Hub` has it all). A protocol, so this
    package does not import the app that starts it."""

    @property
    def settings(self) -> Settings: ...  # `checks` ([[checks]] tables), `retention_days`

    @property
    def store(self) -> Store: ...

    @property
    def telemetry(self) -> Telemetry: ...  # `check_up`, `check_latency`

    @property
    def scrubber(self) -> Scrubber: ...


class Turn(Protocol):
    """Whether this hub probes now: the jobs' lease (`obshub.jobs.lease.Lease`), seen from below
    it (the jobs layer sits above uptime)."""

    def held(self) -> bool: ...

    @property
    def term(self) -> int: ...  # grows each time this hub takes the lease over

    @property
    def previous_until_us(self) -> int: ...  # the previous holder's jobs may have run until then


class Uptime:
    """The probe runner of one hub: which checks exist, which slots this process has probed.
    `turn`: probe only while it is held (None: always, as a lone hub or a test)."""

    def __init__(self, hub: HubParts, max_parallel: int = MAX_PARALLEL, turn: Turn | None = None) -> None:
        self.hub = hub
        self.turn = turn
        self._term = 0
        self._since_us = 0  # slots opened before this may have been probed by the previous holder
        self.config = config_checks(hub.settings.checks)  # ConfigError at start, naming the table
        self.policy = NetworkPolicy.of(hub.settings)  # for API checks; [[checks]] are the operator's
        self.pool = ProbePool(max_parallel)
        self.max_parallel = max_parallel
        self._lock = threading.Lock()
        self._last_slot: dict[tuple[int, str, int], int] = {}
        self._up: dict[tuple[int, str], bool] = {}  # (project, check) -> up at this hub's last probe
        self._cache: tuple[float, list[tuple[Project, Check]]] = (0.0, [])
        self._changes_seen = -1  # version of the CHANGED record when the cache was read
        self._labels: set[tuple[str, str]] = set()
        self._warned: set[str] = set()
        # Ticks run every second: a store outage is a few lines, not one per tick and probe.
        self._reading = OutageLog(log, "uptime: cannot read checks; will retry")
        self._recording = OutageLog(log, "uptime: results not stored")

    @property
    def store(self) -> Store:
        return self.hub.store

    def checks(self, force: bool = False) -> list[tuple[Project, Check]]:
        """Every check of every project (cached DEFS_TTL_S, or until a hub says one changed)."""
        changes = self._changes()
        expires, cached = self._cache
        if not force and time.monotonic() < expires and changes == self._changes_seen:
            return cached
        projects = {p.name: p for p in self.store.list_projects()}
        out: list[tuple[Project, Check]] = []
        for c in self.config:
            if c.project in projects:
                out.append((projects[c.project], c))
            elif c.project not in self._warned:
                self._warned.add(c.project)
                log.warning("uptime check for a project that does not exist; skipped", check=c.name, project=c.project)
        for p in projects.values():
            shadowed = {c.name for c in self.config if c.project == p.name}
            for name, c in sorted(stored_checks(self.store, p.id, p.name).items()):
                if name not in shadowed:
                    self._refresh(p, c)
                    out.append((p, c))
        rate = sum(1 / c.interval_s for _, c in out)
        self.pool.grow(max(self.max_parallel, min(MAX_THREADS, math.ceil(rate * 2))))
        self._forget_gone({(p.name, c.name) for p, c in out})
        self._forget_state({(p.id, c.name) for p, c in out})
        self._cache = (time.monotonic() + (SETTLE_S if changes != self._changes_seen else DEFS_TTL_S), out)
        self._changes_seen = changes
        return out

    def _changes(self) -> int:
        """The CHANGED record's version (-1 without a turn: a lone runner learns of changes
        through `invalidate` only)."""
        if self.turn is None:
            return -1
        rec = self.store.get_record(*CHANGED)
        return rec.version if rec is not None else 0

    def invalidate(self) -> None:
        """A definition changed through this hub: read them again at the next tick, and tell
        the hub that probes (maybe another one) through the store, off the caller's thread."""
        self._cache = (0.0, self._cache[1])
        if self.turn is not None:
            with contextlib.suppress(RuntimeError):  # the pool is shut down: the hub is stopping
                self.pool.submit(self._announce)

    def _announce(self) -> None:
        try:
            self.store.put_record(*CHANGED, {"at": now_us()})
        except StoreError as e:
            log.warning("uptime: cannot tell the other hubs of a changed check; they see it within 2 min", error=str(e))

    def _refresh(self, project: Project, check: Check) -> None:
        """Retention deletes events by age, definitions included: re-store a definition once it
        is a third of the retention period old. The id is the refresh bucket's start, so
        replicas refreshing together store it once."""
        days = self.hub.settings.retention_days
        if days <= 0:
            return
        age_us = days * 86_400_000_000 // 3
        now = now_us()
        if check.defined_at < now - age_us:
            write_definition(self.store, project.id, check.name, check, now // age_us * age_us, self.hub.scrubber)

    def _forget_gone(self, live: set[tuple[str, str]]) -> None:
        tel = self.hub.telemetry
        with self._lock:  # probe threads add labels
            gone = self._labels - live
            self._labels &= live
        for labels in gone:
            for metric in (tel.check_up, tel.check_latency, tel.check_tls_expiry):
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)

    def _forget_state(self, live: set[tuple[int, str]]) -> None:
        """Drop the slots and states of checks gone: checks are defined and deleted by API, so
        without this they would grow with every name ever used."""
        with self._lock:
            self._last_slot = {k: v for k, v in self._last_slot.items() if k[:2] in live}
            self._up = {k: v for k, v in self._up.items() if k in live}

    def tick(self, now: float | None = None) -> list[Future[bool]]:
        """Start the probes due at `now` (epoch s); returns their futures (tests wait on them)."""
        now = time.time() if now is None else now
        if self.turn is not None:
            if not self.turn.held():
                self._forget_gone(set())  # this hub's last results would go stale in /metrics
                return []  # another hub probes
            self._follow(self.turn)
        try:
            checks = self.checks()
        except StoreError as e:
            self._reading.failed(str(e))
            return []
        self._reading.ok()
        futures = []
        for project, check in checks:
            slot = check.slot(now)
            key = (project.id, check.name, check.interval_s)
            with self._lock:
                last = self._last_slot.get(key)
                if last is not None and last >= slot:
                    continue
                self._last_slot[key] = slot
                if last is None and check.slot_start(slot) * 1e6 < self._since_us:
                    continue  # opened while the previous holder ran the probes: it may have done it
            # A slot opened since the last tick is due now; an older one (the hub just started,
            # or read a new definition) is caught up when the on-time probes leave room (pool.py).
            opened = check.slot_start(slot)
            priority = NOW if now - opened < 2 * TICK_S else CATCH_UP
            futures.append(self.pool.submit(functools.partial(self.run, project, check, slot), priority, opened))
        return futures

    def _follow(self, turn: Turn) -> None:
        """A new term (this hub took the lease over): what it remembered of slots and states is
        older than the previous holder's probes; read the definitions again too."""
        term = turn.term
        if term == self._term:
            return
        with self._lock:
            self._term = term
            self._since_us = turn.previous_until_us
            self._last_slot.clear()
            self._up.clear()
        self._cache = (0.0, self._cache[1])

    def _was_up(self, project: Project, check: Check, before_us: int) -> bool | None:
        key = (project.id, check.name)
        with self._lock:
            if key in self._up:
                return self._up[key]
        try:
            return last_state(self.store, project.id, check, before_us)  # once per check and start
        except StoreError:
            return None  # the write below will most likely fail too, and say so

    def run(self, project: Project, check: Check, slot: int) -> bool:
        """Probe, record, export metrics. True if this hub stored the slot's result."""
        at_us = now_us()
        was_up = self._was_up(project, check, at_us)
        result = probe(check, None if check.source == "config" else self.policy)
        with self._lock:
            self._up[(project.id, check.name)] = result.up
        tel = self.hub.telemetry
        tel.check_up.labels(project.name, check.name).set(1 if result.up else 0)
        if result.latency_ms is not None:
            tel.check_latency.labels(project.name, check.name).observe(result.latency_ms / 1000)
        if result.tls_expires_at is not None:
            tel.check_tls_expiry.labels(project.name, check.name).set(result.tls_expires_at / 1_000_000)
        elif not check.target.startswith("https://"):  # changed to http: no certificate any more
            with contextlib.suppress(KeyError):
                tel.check_tls_expiry.remove(project.name, check.name)
        with self._lock:
            self._labels.add((project.name, check.name))
        try:
            stored = record(self.store, project.id, check, slot, result, at_us, was_up, self.hub.scrubber)
        except StoreError as e:
            self._recording.failed(str(e), check=check.name, slot=slot)
            return False
        self._recording.ok()
        return stored

    def close(self, event: SchedulerEvent | None = None) -> None:
        self.pool.close()


def register(scheduler: BaseScheduler, hub: HubParts, turn: Turn | None = None) -> Uptime:
    """Add the uptime job, probing while `turn` is held; a bad `[[checks]]` table raises
    ConfigError here, at start."""
    uptime = Uptime(hub, turn=turn)
    # Ticks on whole seconds, where slots open (offsets and intervals are whole seconds): a
    # tick at a random phase started every probe up to a second late (p50 0.5 s).
    first = dt.datetime.fromtimestamp(math.ceil(time.time()), dt.UTC)
    scheduler.add_job(uptime.tick, "interval", seconds=TICK_S, id="uptime", start_date=first)
    scheduler.add_listener(uptime.close, EVENT_SCHEDULER_SHUTDOWN)
    return uptime


def run_all(uptime: Uptime, now: float | None = None) -> Sequence[bool]:
    """One tick, waiting for its probes (tests and `obshub` one-shot use)."""
    return [f.result() for f in uptime.tick(now)]

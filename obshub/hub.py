"""`Hub`: the state one app shares between its routes, ingest and jobs.

Made by `obshub.app.create_app` and reached from a request as `request.app.state.hub`. It holds
the store, settings, metrics and the token cache, and the two things of ingest that need the
serving event loop or their own threads: admission slots and the ingest thread pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import structlog
from prometheus_client import Histogram
from starlette.requests import Request

from obshub import auth
from obshub.clock import SkewEstimator, parse_sent_at
from obshub.digest import GroupSeen, Scrubber
from obshub.errors import AuthError, StoreOverloaded, StoreUnavailable
from obshub.events import NormalizedEvent
from obshub.ingest.admission import Admission
from obshub.outage import OutageLog
from obshub.settings import Settings
from obshub.store.base import Project, Store, TokenScope, WriteResult
from obshub.telemetry import Telemetry

__all__ = ["AlertDelivery", "ChecksRunner", "Hub", "JobsLease", "hub_of", "stored"]

log = structlog.get_logger("obshub")
T = TypeVar("T")
Scopes = TokenScope | Sequence[TokenScope]  # what a route takes (obshub/auth.py, `authorize`)


class ChecksRunner(Protocol):
    """What the routes need of the uptime runner (obshub.uptime.scheduling.Uptime): named here
    as a protocol, since uptime sits above the hub (it writes through the ingest pipeline)."""

    def invalidate(self) -> None:
        """Re-read check definitions at the next tick (a check was posted or deleted)."""


class JobsLease(Protocol):
    """What the app needs of the jobs' lease (obshub.jobs.lease.Lease): its status for /readyz,
    and releasing it at shutdown so another hub takes the jobs over at once."""

    def held(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...

    def release(self, timeout_s: float = 5.0) -> None: ...


class DeliveryStatus(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class AlertDelivery(Protocol):
    """What the app needs of alert delivery (obshub.alerts.notify.Dispatcher): each notifier's
    status for the API and the Alerts page, and closing it (queued notifications get their
    chance) before the store closes."""

    def status(self) -> Sequence[DeliveryStatus]: ...

    def close(self, timeout_s: float = 15.0) -> None: ...


@dataclass
class Hub:
    """Per-app state shared by the routes (reached as `hub_of(request)`)."""

    settings: Settings
    store: Store
    telemetry: Telemetry
    tokens: auth.TokenCache
    scrubber: Scrubber = field(default_factory=Scrubber)
    skew: SkewEstimator = field(init=False)  # per (project, host), `skew_hosts` keys at most
    admission: Admission | None = None  # made on the serving event loop (`admission_slots`)
    ingest_threads: ThreadPoolExecutor | None = None
    uptime: ChecksRunner | None = None  # while the scheduler runs: told of API check changes
    jobs_lease: JobsLease | None = None  # while the scheduler runs: which hub runs the jobs
    alert_delivery: AlertDelivery | None = None  # while the scheduler runs: the notifiers
    # This store's series of obshub_store_write_seconds, labelled once: exported at 0 from the
    # start (like telemetry._KNOWN), and no label lookup per write.
    store_write: Histogram = field(init=False)
    # Requests that met a store outage or push-back: its first, one line a minute, its end.
    store_outage: OutageLog = field(default_factory=lambda: OutageLog(log, "store unavailable"))
    store_pushback: OutageLog = field(default_factory=lambda: OutageLog(log, "store overloaded"))

    def __post_init__(self) -> None:
        self.skew = SkewEstimator(self.settings.skew_hosts)
        self.store_write = self.telemetry.store_write_seconds.labels(self.store.url.split(":", 1)[0])

    def admission_slots(self) -> Admission:
        """The ingest slots of this app, made on first use: asyncio primitives belong to the
        loop they are made on, and the app's lifespan drops them (`admission = None`)."""
        if self.admission is None:
            self.admission = Admission(self.settings.max_inflight, self.settings.admission_wait_s)
        return self.admission

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ingest work (decoding, parsing, a token lookup on a cache miss) off the
        event loop, on the hub's own pool of `max_inflight` threads (one per full admission
        slot, obshub/ingest/admission.py; store writes need none: see `write`). asyncio's
        executor hop costs a fraction of anyio's `run_in_threadpool` (task lookups, limiter,
        cancel scope), which was ~20% of the hub's CPU at 1,000 Sentry events/s."""
        if self.ingest_threads is None:
            self.ingest_threads = ThreadPoolExecutor(self.settings.max_inflight, thread_name_prefix="obshub-ingest")
        return await asyncio.get_running_loop().run_in_executor(self.ingest_threads, fn, *args)

    async def authenticate(self, request: Request, scope: Scopes, project_id: int | None = None) -> Project:
        return await self.check_token(auth.bearer(request.headers), scope, project_id)

    async def check_token(self, token: str | None, scope: Scopes, project_id: int | None = None) -> Project:
        """The project this token may act on with `scope` (or one of the scopes), or
        AuthError(401/403)."""
        if not token:
            raise AuthError(401, "missing credentials: send 'Authorization: Bearer <token>'")
        return await self.check_token_hash(auth.hash_token(token), scope, project_id)

    async def check_token_hash(self, token_hash: str, scope: Scopes, project_id: int | None = None) -> Project:
        """`check_token` for a token known by its SHA-256: a web session's cookie carries the
        hash, never the token, and goes through the same cache and rules as the API. A cache hit
        costs no worker-thread hop (one per request adds up: at 1,000 Sentry events/s the hops
        alone were ~15% of the hub's CPU)."""
        hit, found = self.tokens.peek_hash(token_hash)
        if not hit:
            found = await self.offload(self.tokens.lookup_hash, self.store, token_hash)
        return auth.authorize(found, scope, project_id)

    async def write(
        self, project_id: int, events: Sequence[NormalizedEvent], groups: Mapping[str, GroupSeen] | None = None
    ) -> WriteResult:
        """Store a digested batch in one store call (obshub/ingest/pipeline.py is the way in):
        the store records the groups of the occurrences it stored before answering, so an
        acknowledged occurrence never points at a missing group, and reopens the resolved ones
        this batch regresses."""
        started = time.perf_counter()
        result = await asyncio.wrap_future(
            self.store.submit_events(project_id, stored(events), list(groups.values()) if groups else ())
        )
        self.store_write.observe(time.perf_counter() - started)
        self.store_outage.ok()
        self.store_pushback.ok()
        return result

    def store_trouble(self, exc: StoreUnavailable | StoreOverloaded, path: str) -> str:
        """Count and log a request that met a store outage or push-back; returns the text its
        answer gives. One place for every route: the JSON routes answer through app.py's
        handler, ingest through obshub/ingest/pipeline.py (the Sentry routes in Relay's form)."""
        if isinstance(exc, StoreUnavailable):
            self.telemetry.store_up.set(0)
            self.store_outage.failed(str(exc), path=path)
            return f"store unavailable: {exc}"
        # Worth a log line: besides a full write queue, this is how a cluster out of disk refuses.
        self.store_pushback.failed(str(exc), path=path)
        return f"store overloaded: {exc}"

    def observe_clock(
        self, project_id: int, sent_at: str | None, received_at: int, events: Sequence[NormalizedEvent]
    ) -> None:
        """One skew sample per host of a batch that carried `X-Obshub-Sent-At`, in the sending
        project only (host names are the client's: another project's `web-1` is another host)."""
        sent = parse_sent_at(sent_at)
        if sent is None:
            return
        for host in {e["host"] for e in events if e["host"]}:
            self.skew.observe(project_id, host, sent, received_at)


def stored(events: Sequence[NormalizedEvent]) -> Sequence[dict[str, Any]]:
    """Normalized events as the Store protocol (obshub/store/base.py) still types them: plain
    dicts, which they are at run time (no copy)."""
    return cast(Sequence[dict[str, Any]], events)


def hub_of(request: Request) -> Hub:
    """The hub of the app serving `request` (`create_app` puts it on `app.state`): typed, so
    mypy checks every route's use of it."""
    hub: Hub = request.app.state.hub
    return hub

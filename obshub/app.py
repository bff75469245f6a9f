"""`create_app(settings)`: the hub as one Starlette app.

Nothing connects at import time: the lifespan opens the store, bootstraps the first project,
starts the scheduled jobs, and undoes all of it on shutdown. Domain errors become HTTP statuses
here and only here (see the tree in `obshub/errors.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from obshub import auth
from obshub.digest import GroupSeen, Scrubber
from obshub.digest.skew import SkewEstimator, parse_sent_at
from obshub.errors import Conflict, NotFound, QueryError, StoreOverloaded, StoreUnavailable
from obshub.ingest import sentry
from obshub.ingest.native import ingest
from obshub.jobs.scheduler import start_jobs
from obshub.outage import OutageLog
from obshub.settings import Settings
from obshub.store import open_store
from obshub.store.base import Project, Store, WriteResult
from obshub.telemetry import Telemetry
from obshub.web.api import routes as api_routes
from obshub.web.openapi import routes as openapi_routes
from obshub.web.pages import routes as page_routes

__all__ = ["Hub", "create_app"]

log = structlog.get_logger("obshub")
T = TypeVar("T")


@dataclass
class Hub:
    """Per-app state shared by the routes (reached as `request.app.state.hub`)."""

    settings: Settings
    store: Store
    telemetry: Telemetry
    tokens: auth.TokenCache
    scrubber: Scrubber = field(default_factory=Scrubber)
    skew: SkewEstimator = field(default_factory=SkewEstimator)
    admission: Any = None  # obshub.ingest.admission.Admission, made on the serving event loop
    ingest_threads: ThreadPoolExecutor | None = None
    uptime: Any = None  # obshub.jobs.uptime.Uptime while the scheduler runs: told of API check changes
    # This store's series of obshub_store_write_seconds, labelled once: exported at 0 from the
    # start (like telemetry._KNOWN), and no label lookup per write.
    store_write: Any = field(init=False)
    # Requests that met a store outage or push-back: its first, one line a minute, its end.
    store_outage: OutageLog = field(default_factory=lambda: OutageLog(log, "store unavailable"))
    store_pushback: OutageLog = field(default_factory=lambda: OutageLog(log, "store overloaded"))

    def __post_init__(self) -> None:
        self.store_write = self.telemetry.store_write_seconds.labels(self.store.url.split(":", 1)[0])

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ingest work (decoding, parsing, a token lookup on a cache miss) off the
        event loop, on the hub's own pool of `max_inflight` threads (one per full admission
        slot, obshub/ingest/admission.py; store writes need none: see `write`). asyncio's
        executor hop costs a fraction of anyio's `run_in_threadpool` (task lookups, limiter,
        cancel scope), which was ~20% of the hub's CPU at 1,000 Sentry events/s."""
        if self.ingest_threads is None:
            self.ingest_threads = ThreadPoolExecutor(self.settings.max_inflight, thread_name_prefix="obshub-ingest")
        return await asyncio.get_running_loop().run_in_executor(self.ingest_threads, fn, *args)

    async def authenticate(self, request: Request, scope: str, project_id: int | None = None) -> Project:
        return await self.check_token(auth.bearer(request.headers), scope, project_id)

    async def check_token(self, token: str | None, scope: str, project_id: int | None = None) -> Project:
        """The project this token may act on with `scope`, or AuthError(401/403). A cache hit
        costs no worker-thread hop (one per request adds up: at 1,000 Sentry events/s the hops
        alone were ~15% of the hub's CPU)."""
        if not token:
            raise auth.AuthError(401, "missing credentials: send 'Authorization: Bearer <token>'")
        hit, found = self.tokens.peek(token)
        if not hit:
            found = await self.offload(self.tokens.lookup, self.store, token)
        return auth.authorize(found, scope, project_id)

    async def write(self, project_id: int, events: Sequence[dict[str, Any]],
                    groups: Mapping[str, GroupSeen] | None = None) -> WriteResult:
        """Store a digested batch in one store call (obshub/ingest/pipeline.py is the way in):
        the store records the groups of the occurrences it stored before answering, so an
        acknowledged occurrence never points at a missing group, and reopens the resolved ones
        this batch regresses."""
        started = time.perf_counter()
        result = await asyncio.wrap_future(
            self.store.submit_events(project_id, events, list(groups.values()) if groups else ()))
        self.store_write.observe(time.perf_counter() - started)
        self.store_outage.ok()
        self.store_pushback.ok()
        return result

    def store_trouble(self, exc: StoreUnavailable | StoreOverloaded, path: str) -> str:
        """Count and log a request that met a store outage or push-back; returns the text its
        answer gives. One place for every route: the JSON routes answer through `_on_store`,
        the Sentry routes in Relay's form (obshub/ingest/sentry.py)."""
        if isinstance(exc, StoreUnavailable):
            self.telemetry.store_up.set(0)
            self.store_outage.failed(str(exc), path=path)
            return f"store unavailable: {exc}"
        # Worth a log line: besides a full write queue, this is how a cluster out of disk refuses.
        self.store_pushback.failed(str(exc), path=path)
        return f"store overloaded: {exc}"

    def observe_clock(self, sent_at: str | None, received_at: int, events: Sequence[dict[str, Any]]) -> None:
        sent = parse_sent_at(sent_at)
        if sent is None:
            return
        for host in {e["host"] for e in events if e["host"]}:
            self.skew.observe(host, sent, received_at)


def _json_error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def _on_auth(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.AuthError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json_error(exc.status, str(exc), headers)


async def _on_query(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueryError)
    # `column` only where it applies (a position in `q`); a bad `limit` or `state` has none.
    if exc.column is None:
        return _json_error(400, str(exc))
    return _json_error(400, str(exc), column=exc.column)


async def _on_store(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, (StoreUnavailable, StoreOverloaded))
    message = request.app.state.hub.store_trouble(exc, request.url.path)
    return _json_error(exc.status, message, {"Retry-After": str(exc.retry_after)})


async def _on_not_found(request: Request, exc: Exception) -> Response:
    return _json_error(404, str(exc) or "not found")


async def _on_conflict(request: Request, exc: Exception) -> Response:
    return _json_error(409, str(exc))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


_READY_TIMEOUT_S = 5  # a probe of a hung store answers 503 after this, not when the client gives up


async def readyz(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    try:
        await asyncio.wait_for(run_in_threadpool(hub.store.ping), timeout=_READY_TIMEOUT_S)
    except (StoreUnavailable, StoreOverloaded, TimeoutError) as e:
        hub.telemetry.store_up.set(0)
        why = str(e) or f"no answer from the store within {_READY_TIMEOUT_S} s"  # a hung node: TimeoutError()
        return _json_error(503, f"store not ready: {why}", {"Retry-After": "5"})
    hub.telemetry.store_up.set(1)
    hub.store_outage.ok()
    return JSONResponse({"status": "ready", "store": hub.store.url.split("@")[-1]})


async def metrics(request: Request) -> Response:
    return PlainTextResponse(generate_latest(request.app.state.hub.telemetry.registry),
                             media_type=CONTENT_TYPE_LATEST)


def bootstrap(store: Store, settings: Settings, out: Any = None) -> dict[str, Any] | None:
    """First start on an empty store: create project `default` and print its credentials."""
    if not store.is_empty():
        return None
    try:
        creds = auth.create_project(store, "default", settings.base_url)
    except Conflict:
        return None  # another replica won the race
    out = out or sys.stdout
    print("obshub: created project 'default' (shown once; store them now)", file=out)
    for key in ("ingest_token", "read_token", "dsn"):
        print(f"  {key:<13} {creds[key]}", file=out)
    out.flush()
    return creds


def create_app(settings: Settings, store: Store | None = None, telemetry: Telemetry | None = None) -> Starlette:
    store = store if store is not None else open_store(settings.store)
    hub = Hub(settings=settings, store=store, telemetry=telemetry or Telemetry.create(),
              tokens=auth.TokenCache(settings.token_cache_s),
              scrubber=Scrubber(tuple(settings.scrub_keys.split(",")), enabled=settings.scrub))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.admission = None  # asyncio primitives belong to one loop: made afresh on this one
        await run_in_threadpool(hub.store.open)
        await run_in_threadpool(bootstrap, hub.store, settings)
        hub.telemetry.store_up.set(1)
        scheduler = start_jobs(hub)
        try:
            yield
        finally:
            scheduler.shutdown(wait=False)
            if hub.ingest_threads is not None:
                hub.ingest_threads.shutdown(wait=False)
                hub.ingest_threads = None
            await run_in_threadpool(hub.store.close)

    routes = [
        Route("/api/v1/ingest", ingest, methods=["POST"]),
        *sentry.routes,
        *api_routes,
        *openapi_routes,
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        *page_routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        auth.AuthError: _on_auth,
        QueryError: _on_query,
        StoreUnavailable: _on_store,
        StoreOverloaded: _on_store,
        NotFound: _on_not_found,
        Conflict: _on_conflict,
    })
    app.state.hub = hub
    return app

"""`create_app(settings)`: the hub as one Starlette app (its shared state: `obshub.hub.Hub`).

Nothing connects at import time: the lifespan opens the store, bootstraps the first project,
starts the scheduled jobs, and undoes all of it on shutdown. Domain errors raised by a route are
answered here, through the one mapping of obshub/http_errors.py (the tree: obshub/errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from obshub import auth
from obshub.digest import Scrubber
from obshub.errors import AuthError, Conflict, ObshubError, StoreOverloaded, StoreUnavailable
from obshub.http_errors import ANSWERED, error_response
from obshub.hub import Hub, hub_of
from obshub.ingest import es, loki, native, otlp, sentry
from obshub.jobs.scheduler import start_jobs, stop_jobs
from obshub.settings import Settings
from obshub.store import open_store
from obshub.store.base import Store
from obshub.telemetry import Telemetry
from obshub.web import api, api_alerts, api_dashboards, api_metrics, openapi, pages
from obshub.web.disconnects import Disconnects
from obshub.web.origin import TrustedHost
from obshub.web.session import SECRET_NAME, WebState

__all__ = ["create_app"]


async def _on_error(request: Request, exc: Exception) -> Response:
    """Every route's answer to a domain error (obshub/http_errors.py); a store outage or
    push-back is counted and logged first (`Hub.store_trouble`)."""
    assert isinstance(exc, ObshubError)
    message = None
    if isinstance(exc, (StoreUnavailable, StoreOverloaded)):
        message = hub_of(request).store_trouble(exc, request.url.path)
    return error_response(exc, message=message)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


_READY_TIMEOUT_S = 5  # a probe of a hung store answers 503 after this, not when the client gives up


async def _shows_details(request: Request, store_ok: bool) -> bool:
    """Whether /readyz may say which store and why: only to a read token of any project. Probes
    and load balancers need only the status; the store's address and its error are the
    operator's (they are in the hub's log: `Hub.store_trouble`)."""
    token = auth.bearer(request.headers)
    if not token:
        return False
    hub = hub_of(request)
    try:
        if store_ok:
            await hub.check_token(token, "read")
        else:  # the store is down or hung: only a token this hub checked within token_cache_s
            hit, found = hub.tokens.peek_hash(auth.hash_token(token))
            auth.authorize(found if hit else None, "read")
    except (AuthError, StoreUnavailable, StoreOverloaded):
        return False
    return True


async def readyz(request: Request) -> Response:
    hub = hub_of(request)
    try:
        await asyncio.wait_for(run_in_threadpool(hub.store.ping), timeout=_READY_TIMEOUT_S)
    except (StoreUnavailable, StoreOverloaded, TimeoutError) as e:
        why = str(e) or f"no answer from the store within {_READY_TIMEOUT_S} s"  # a hung node: TimeoutError()
        hub.store_trouble(StoreUnavailable(why), request.url.path)  # store_up 0, and the reason in the log
        detailed = await _shows_details(request, store_ok=False)
        return error_response(
            StoreUnavailable(why), message=f"store not ready: {why}" if detailed else "store not ready"
        )
    hub.telemetry.store_up.set(1)
    hub.store_outage.ok()
    body: dict[str, Any] = {"status": "ready"}
    if await _shows_details(request, store_ok=True):
        body["store"] = hub.store.url.split("@")[-1]
        if hub.jobs_lease is not None:  # which hub runs the jobs (obshub/jobs/lease.py)
            body["jobs_lease"] = hub.jobs_lease.status()
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    hub = hub_of(request)
    tel = hub.telemetry
    if tel.scrape is not tel.registry:  # one of several workers: every worker's values, merged
        lease = hub.jobs_lease  # this worker's own share of obshub_jobs_leader, as of now
        tel.jobs_leader.set(1.0 if lease is not None and lease.held() else 0.0)
    return PlainTextResponse(generate_latest(tel.scrape), media_type=CONTENT_TYPE_LATEST)


ops_routes: list[BaseRoute] = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
]


def bootstrap(store: Store, settings: Settings, out: TextIO | None = None) -> dict[str, Any] | None:
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
    hub = Hub(
        settings=settings,
        store=store,
        telemetry=telemetry or Telemetry.create(),
        tokens=auth.TokenCache(settings.token_cache_s),
        scrubber=Scrubber(tuple(settings.scrub_keys.split(",")), enabled=settings.scrub),
    )

    web = WebState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.admission = None  # asyncio primitives belong to one loop: made afresh on this one
        await run_in_threadpool(hub.store.open)
        await run_in_threadpool(bootstrap, hub.store, settings)
        # One cookie key for every replica on this store, and across restarts (web/session.py).
        web.key = settings.secret_key or await run_in_threadpool(
            hub.store.shared_secret, SECRET_NAME, secrets.token_urlsafe(32)
        )
        hub.telemetry.store_up.set(1)
        scheduler = await run_in_threadpool(start_jobs, hub)  # takes the jobs' lease if free: a store write
        try:
            yield
        finally:
            await run_in_threadpool(stop_jobs, hub, scheduler)  # hands the jobs' lease over
            if hub.ingest_threads is not None:
                hub.ingest_threads.shutdown(wait=False)
                hub.ingest_threads = None
            await run_in_threadpool(hub.store.close)

    # Every module that serves routes ends with its `routes` list; the pages come last (`/`).
    routes = [
        *native.routes,
        *sentry.routes,
        *otlp.routes,
        *es.routes,
        *loki.routes,
        *api.routes,
        *api_alerts.routes,
        *api_metrics.routes,
        *api_dashboards.routes,
        *openapi.routes,
        *ops_routes,
        *pages.routes,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=dict.fromkeys(ANSWERED, _on_error),
        # One log line for a client gone mid-request (web/disconnects.py); no URL built from an
        # untrusted Host (web/origin.py).
        middleware=[Middleware(Disconnects), Middleware(TrustedHost, settings=settings)],
    )
    app.state.hub = hub
    app.state.web = web
    return app

"""`create_app(settings)`: the hub as one Starlette app (its shared state: `obshub.hub.Hub`).

Nothing connects at import time: the lifespan opens the store, bootstraps the first project,
starts the scheduled jobs, and undoes all of it on shutdown. Domain errors raised by a route are
answered here, through the one mapping of obshub/http_errors.py (the tree: obshub/errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from obshub import auth
from obshub.digest import Scrubber
from obshub.errors import Conflict, ObshubError, StoreOverloaded, StoreUnavailable
from obshub.http_errors import ANSWERED, error_response
from obshub.hub import Hub, hub_of
from obshub.ingest import native, sentry
from obshub.jobs.scheduler import start_jobs
from obshub.settings import Settings
from obshub.store import open_store
from obshub.store.base import Store
from obshub.telemetry import Telemetry
from obshub.web import api, openapi, pages

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


async def readyz(request: Request) -> Response:
    hub = hub_of(request)
    try:
        await asyncio.wait_for(run_in_threadpool(hub.store.ping), timeout=_READY_TIMEOUT_S)
    except (StoreUnavailable, StoreOverloaded, TimeoutError) as e:
        hub.telemetry.store_up.set(0)
        why = str(e) or f"no answer from the store within {_READY_TIMEOUT_S} s"  # a hung node: TimeoutError()
        return error_response(StoreUnavailable(why), message=f"store not ready: {why}")
    hub.telemetry.store_up.set(1)
    hub.store_outage.ok()
    return JSONResponse({"status": "ready", "store": hub.store.url.split("@")[-1]})


async def metrics(request: Request) -> Response:
    return PlainTextResponse(generate_latest(hub_of(request).telemetry.registry), media_type=CONTENT_TYPE_LATEST)


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

    # Every module that serves routes ends with its `routes` list; the pages come last (`/`).
    routes = [*native.routes, *sentry.routes, *api.routes, *openapi.routes, *ops_routes, *pages.routes]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=dict.fromkeys(ANSWERED, _on_error))
    app.state.hub = hub
    return app

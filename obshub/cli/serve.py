"""`obshub serve`: wait for the store, build the app, run uvicorn (and `--demo`'s data)."""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from obshub.cli.args import _die
from obshub.errors import ConfigError, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from obshub.hub import Hub
    from obshub.settings import Settings
    from obshub.store.base import Store


def _serve(args: argparse.Namespace) -> int:
    from obshub.app import create_app
    from obshub.settings import load_settings

    settings = load_settings(host=args.host, port=args.port, store=args.store)
    _configure_logging(settings.log_level)
    workers: int = args.workers
    if workers > 1 and settings.store.startswith("sqlite:"):
        return _die(
            f"--workers {workers}: the SQLite store has one writer, which must own its file (one process); "
            "run one worker, or use the OpenSearch store (docs/opensearch.md#workers)"
        )
    app = create_app(settings)
    hub: Hub = app.state.hub
    try:
        _wait_for_store(hub.store, settings.store_wait_s)
    except StoreError as e:
        return _die(f"cannot start: {e}", 1)
    if args.demo:
        _load_demo_direct(hub, settings)
    if workers > 1:  # every check above ran once, here; each worker builds its own app
        from obshub.cli.workers import supervise

        given = {"--host": args.host, "--port": args.port, "--store": args.store}
        return supervise(workers, settings, [w for k, v in given.items() if v is not None for w in (k, str(v))])
    print(f"obshub: serving on {settings.base_url} (store {settings.store.split('@')[-1]})", file=sys.stderr)
    _tune_gc()
    return run(app, settings)


def run(
    app: Any, settings: Settings, sockets: list[socket.socket] | None = None, on_ready: Callable[[], None] | None = None
) -> int:
    """Serve `app` with uvicorn until SIGTERM or Ctrl-C, on `settings`' address or on `sockets`
    (a worker's, bound by the supervisor); `on_ready` once the app's startup completed. Returns
    the exit status: 0, or the reason the startup failed printed on one line (2 for a bad
    setting, 1 for the store; uvicorn's own 3 for anything else: the port taken, a traceback)."""
    import uvicorn

    failed: list[BaseException] = []
    server = uvicorn.Server(
        uvicorn.Config(
            _startup_errors_to(failed, app, on_ready),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            # 5 s grace: open live-tail streams must not hold a stopping hub for their full rotation.
            timeout_graceful_shutdown=5,
            timeout_keep_alive=settings.keepalive_timeout_s,
        )
    )
    try:
        server.run(sockets=sockets)
    except SystemExit:  # uvicorn's exit when the app's startup failed (status 3; it logged why)
        if not failed:
            raise
    if not failed:
        return 0
    if isinstance(failed[0], ConfigError):
        return _die(f"configuration error: {failed[0]}")
    return _die(f"cannot start: {failed[0]}", 1)


def _wait_for_store(store: Store, wait_s: float) -> None:
    """Open (then close) the store, retrying while it is unavailable, for up to `wait_s`.

    Before the server starts, not in its lifespan: uvicorn takes SIGTERM and Ctrl-C from the
    moment it runs and would only act on them once startup ended. Out here they stop the wait
    at once. Only unavailability is retried; a bad path or URL fails at the first try."""
    deadline = time.monotonic() + wait_s
    delay = 1.0
    while True:
        try:
            store.open()
        except StoreUnavailable as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            pause = min(delay, left)
            print(
                f"obshub: waiting for the store ({e}); next try in {pause:.0f} s, {left:.0f} s left (store_wait_s)",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(pause)
            delay = min(2 * delay, 10.0)
            continue
        store.close()
        return


def _startup_errors_to(failed: list[BaseException], app: Any, on_ready: Callable[[], None] | None = None) -> Any:
    """`app` for uvicorn, with a startup that failed on the store or the settings (cluster
    unreachable, credentials refused, a path that cannot be created) put in `failed` instead of
    logged as a 30-line traceback: the reason is one line, printed by `run` with the exit
    status. Any other failure keeps its traceback; requests pass straight through."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def lifespan_send(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":
                exc = sys.exc_info()[1]  # sent from Starlette's `except` around the lifespan
                if isinstance(exc, (StoreError, ConfigError)):
                    failed.append(exc)
                    message = {"type": message["type"], "message": ""}
            await send(message)
            if message["type"] == "lifespan.startup.complete" and on_ready is not None:
                on_ready()

        await app(scope, receive, lifespan_send)

    return asgi


def _tune_gc() -> None:
    """Fewer cyclic-GC passes for a server that allocates ~10 containers per ingested event.

    With CPython's default (a young collection every 700 container allocations) the collector
    ran ~450 times per 100k ingested events and took ~9% of the hub's CPU (measured with
    gc.callbacks, bench/ingest_opensearch.py), mostly rescanning objects that live as long as
    the process. `freeze` moves everything built so far (modules, app, settings) out of the
    collector's sight; the higher young threshold makes a pass every ~50k allocations. Reference
    counting still frees the per-request objects at once; only cycles wait a little longer.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


def _configure_logging(level: str) -> None:
    """The hub's own logs: structlog key=value lines on stderr at `log_level`."""
    import logging

    import structlog

    num = logging.getLevelName(level.upper())
    if not isinstance(num, int):
        raise ConfigError(f"OBSHUB_LOG_LEVEL: unknown level {level!r} (debug, info, warning, error)")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(num),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _load_demo_direct(hub: Hub, settings: Settings) -> None:
    """`serve --demo`: store the demo the way ingest stores it (obshub/ingest/pipeline.py:
    normalize, digest, `Hub.write`), one batch per host as each host's agent would send it,
    so the Errors page shows the demo's groups and a later `obshub demo` finds only duplicates."""
    import asyncio

    from obshub.app import bootstrap
    from obshub.demo import CLOCK_SKEW_US, generate
    from obshub.events import now_us
    from obshub.ingest import pipeline

    hub.store.open()
    try:
        bootstrap(hub.store, settings)
        project = hub.store.get_project("default")
        if project is None:
            raise ConfigError("serve --demo: the store has no project 'default' to load the demo into")
        now = now_us()
        raw = generate(now, run=f"demo{now // 60_000_000}")
        hosts = sorted({e.get("host", "") for e in raw})
        for host in hosts:
            if host:
                hub.skew.observe(project.id, host, now + CLOCK_SKEW_US.get(host, 0), now)  # as its agent would report

        async def load() -> int:
            stored = 0
            for host in hosts:
                mine = [e for e in raw if e.get("host", "") == host]
                for i in range(0, len(mine), 1000):
                    batch = pipeline.prepare(mine[i : i + 1000], now, hub.scrubber, settings.limits)
                    stored += (await pipeline.write(hub, project.id, batch)).accepted
            return stored

        stored = asyncio.run(load())
        print(f"obshub: loaded {stored} of {len(raw)} demo events into project 'default'", file=sys.stderr)
    finally:
        hub.store.close()

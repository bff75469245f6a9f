"""`obshub` command line: serve | project | demo | search | trace.

Client commands (`demo`, `search`, `trace`) talk HTTP to a running hub (`--url`, `--token`, or
OBSHUB_URL / OBSHUB_TOKEN); `serve` and `project` open the store directly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from obshub.errors import ConfigError, Conflict, StoreError, StoreUnavailable

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8480"


def _add_client_args(p: argparse.ArgumentParser, token_help: str) -> None:
    p.add_argument("--url", default=os.environ.get("OBSHUB_URL", DEFAULT_URL),
                   help=f"hub base URL (env OBSHUB_URL; default {DEFAULT_URL})")
    p.add_argument("--token", default=os.environ.get("OBSHUB_TOKEN"), help=f"{token_help} (env OBSHUB_TOKEN)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="obshub", description="obshub: follow one request or one user across every server.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sp = sub.add_parser("serve", help="run the hub", description=(
        "Run the hub (HTTP API, ingest, web explorer). A store that is unavailable at start (cluster down "
        "or still starting) is retried for OBSHUB_STORE_WAIT_S seconds (default 60); then exit status 1. "
        "A bad setting: exit status 2, naming it."))
    sp.add_argument("--host", help="listen address (env OBSHUB_HOST; default 127.0.0.1)")
    sp.add_argument("--port", type=int, help="listen port (env OBSHUB_PORT; default 8480)")
    sp.add_argument("--store", help="store URL (env OBSHUB_STORE; default sqlite:///./obshub-data/obshub.db)")
    sp.add_argument("--demo", action="store_true", help="load the demo dataset into project 'default' before serving")

    pp = sub.add_parser("project", help="manage projects", description="Create or list projects.")
    psub = pp.add_subparsers(dest="action", metavar="ACTION", required=True)
    pc = psub.add_parser("create", help="create a project and print its tokens as JSON",
                         description="Create a project; prints {project, project_id, ingest_token, read_token, dsn}.")
    pc.add_argument("name")
    pc.add_argument("--store", help="store URL (env OBSHUB_STORE)")
    pl = psub.add_parser("list", help="list projects", description="List projects as JSON lines.")
    pl.add_argument("--store", help="store URL (env OBSHUB_STORE)")

    dp = sub.add_parser("demo", help="send a realistic demo dataset to a running hub",
                        description="Send 3 hosts x 2 services x 50 users of logs, errors and analytics events.")
    _add_client_args(dp, "ingest token")

    sr = sub.add_parser("search", help="search events", description="Search events with the query language.")
    sr.add_argument("query", nargs="?", default="", help='e.g. \'level:error service:api "timed out"\'')
    sr.add_argument("--from", dest="from_", default="-24h", help="start: RFC 3339 or relative (-15m, -24h, -7d); default -24h")
    sr.add_argument("--to", default=None, help="end: RFC 3339 or relative; default now")
    sr.add_argument("--limit", type=int, default=50, help="events to show (default 50, max 1000)")
    sr.add_argument("--json", action="store_true", help="print the API response as JSON")
    _add_client_args(sr, "read token")

    tr = sub.add_parser("trace", help="show every event of a request or trace id, across hosts",
                        description="Show every event whose request_id or trace_id is ID, oldest first.")
    tr.add_argument("id")
    tr.add_argument("--json", action="store_true", help="print the API response as JSON")
    _add_client_args(tr, "read token")
    return ap


def _die(msg: str, code: int = 2) -> int:
    print(f"obshub: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "project":
            return _project(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "search":
            return _search(args)
        return _trace(args)
    except ConfigError as e:
        return _die(f"configuration error: {e}")
    except StoreError as e:  # e.g. `serve --demo` or `project` with the store unreachable
        return _die(str(e), 1)
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from obshub.app import create_app
    from obshub.settings import load_settings

    settings = load_settings(host=args.host, port=args.port, store=args.store)
    _configure_logging(settings.log_level)
    app = create_app(settings)
    try:
        _wait_for_store(app.state.hub.store, settings.store_wait_s)
    except StoreError as e:
        return _die(f"cannot start: {e}", 1)
    if args.demo:
        _load_demo_direct(app.state.hub, settings)
    print(f"obshub: serving on {settings.base_url} (store {settings.store.split('@')[-1]})", file=sys.stderr)
    _tune_gc()
    failed: list[BaseException] = []
    try:
        # 5 s grace: open live-tail streams must not hold a stopping hub for their full rotation.
        uvicorn.run(_startup_errors_to(failed, app), host=settings.host, port=settings.port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=5)
    except SystemExit:  # uvicorn's exit when the app's startup failed
        if not failed:
            raise
        if isinstance(failed[0], ConfigError):
            return _die(f"configuration error: {failed[0]}")
        return _die(f"cannot start: {failed[0]}", 1)
    return 0


def _wait_for_store(store: Any, wait_s: float) -> None:
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
            print(f"obshub: waiting for the store ({e}); next try in {pause:.0f} s, "
                  f"{left:.0f} s left (store_wait_s)", file=sys.stderr, flush=True)
            time.sleep(pause)
            delay = min(2 * delay, 10.0)
            continue
        store.close()
        return


def _startup_errors_to(failed: list[BaseException], app: Any) -> Any:
    """`app` for uvicorn, with a startup that failed on the store or the settings (cluster
    unreachable, credentials refused, a path that cannot be created) put in `failed` instead of
    logged as a 30-line traceback: the reason is one line, printed by `_serve` with the exit
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
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(num),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def _load_demo_direct(hub: Any, settings: Any) -> None:
    """`serve --demo`: store the demo the way ingest stores it (obshub/ingest/pipeline.py:
    normalize, digest, `Hub.write`), one batch per host as each host's agent would send it,
    so the Errors page shows the demo's groups and a later `obshub demo` finds only duplicates."""
    import asyncio

    from obshub.app import bootstrap
    from obshub.demo import CLOCK_SKEW_US, generate
    from obshub.ingest import pipeline

    hub.store.open()
    try:
        bootstrap(hub.store, settings)
        project = hub.store.get_project("default")
        if project is None:
            raise ConfigError("serve --demo: the store has no project 'default' to load the demo into")
        now = time.time_ns() // 1000
        raw = generate(now, run=f"demo{now // 60_000_000}")
        hosts = sorted({e.get("host", "") for e in raw})
        for host in hosts:
            if host:
                hub.skew.observe(host, now + CLOCK_SKEW_US.get(host, 0), now)  # as its agent would report

        async def load() -> int:
            stored = 0
            for host in hosts:
                mine = [e for e in raw if e.get("host", "") == host]
                for i in range(0, len(mine), 1000):
                    batch = pipeline.prepare(mine[i:i + 1000], now, hub.scrubber, settings.limits)
                    stored += (await pipeline.write(hub, project.id, batch)).accepted
            return stored

        stored = asyncio.run(load())
        print(f"obshub: loaded {stored} of {len(raw)} demo events into project 'default'", file=sys.stderr)
    finally:
        hub.store.close()


def _open_store(url: str | None) -> Any:
    from obshub.settings import load_settings
    from obshub.store import open_store

    settings = load_settings(store=url)
    store = open_store(settings.store)
    store.open()
    return store, settings


def _project(args: argparse.Namespace) -> int:
    from obshub.auth import create_project, dsn

    try:
        store, settings = _open_store(args.store)
    except StoreError as e:
        return _die(str(e), 1)
    try:
        if args.action == "create":
            try:
                creds = create_project(store, args.name, settings.base_url)
            except Conflict as e:
                return _die(str(e), 1)
            print(json.dumps(creds))
        else:
            for p in store.list_projects():
                print(json.dumps({"project": p.name, "project_id": p.id, "dsn": dsn(p, settings.base_url)}))
    finally:
        store.close()
    return 0


def _client(args: argparse.Namespace) -> Any:
    import httpx

    if not args.token:
        raise ConfigError("--token (or OBSHUB_TOKEN) is required")
    return httpx.Client(base_url=args.url.rstrip("/"), headers={"Authorization": f"Bearer {args.token}"}, timeout=30)


def _get(args: argparse.Namespace, path: str, params: dict[str, Any]) -> dict[str, Any] | int:
    import httpx

    try:
        with _client(args) as c:
            r = c.get(path, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as e:
        return _die(f"cannot reach the hub at {args.url}: {e}", 1)
    if r.status_code != 200:
        return _die(_refusal(r, params.get("q")), 1)
    data: dict[str, Any] = r.json()
    return data


def _refusal(r: Any, query: str | None = None) -> str:
    """'hub answered <status>: <its error>', with a caret under a query's bad column."""
    try:
        err = r.json()
    except ValueError:
        err = None
    if isinstance(err, dict):
        msg = str(err.get("error", r.text))
        if err.get("column"):
            msg += f"\n  {query or ''}\n  {' ' * (err['column'] - 1)}^"
    else:  # not the hub's JSON (a proxy's page, say)
        msg = r.text[:300]
    retry = r.headers.get("retry-after")
    return f"hub answered {r.status_code}: {msg}" + (f" (retry after {retry} s)" if retry else "")


def _line(e: dict[str, Any]) -> str:
    ids = " ".join(f"{k}={e[k]}" for k in ("request_id", "user_id") if k in e)
    return f"{e['ts']}  {e.get('host', '-'):<10} {e.get('service', '-'):<10} {e['level']:<8} {e.get('message', '')}  {ids}".rstrip()


def _search(args: argparse.Namespace) -> int:
    data = _get(args, "/api/v1/search", {"q": args.query, "from": args.from_, "to": args.to, "limit": args.limit})
    if isinstance(data, int):
        return data
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for e in reversed(data["events"]):  # oldest at the top, like a log file
        print(_line(e))
    if not data["events"]:
        print(f"no events match in the range {args.from_} .. {args.to or 'now'}", file=sys.stderr)
    elif data["next_cursor"]:
        print(f"(showing the newest {len(data['events'])}; raise --limit or narrow the query for more)", file=sys.stderr)
    return 0


def _trace(args: argparse.Namespace) -> int:
    data = _get(args, f"/api/v1/trace/{args.id}", {})
    if isinstance(data, int):
        return data
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if not data["events"]:
        print(f"no events with request_id or trace_id {args.id!r}", file=sys.stderr)
        return 1
    events, hosts = data["events"], data["hosts"]
    skew = {h: ms for h, ms in (data.get("skew_ms") or {}).items() if ms}
    if skew:
        from obshub.events import parse_ts

        # Order on corrected time: raw time minus the host's estimated clock offset.
        events = sorted(events, key=lambda e: parse_ts(e["ts"]) - skew.get(e.get("host"), 0) * 1000)
        hosts = list(dict.fromkeys(e["host"] for e in events if e.get("host")))
    print(f"trace {data['id']}: {len(events)} events, hosts {', '.join(hosts)}, "
          f"services {', '.join(data['services'])}, {data['error_count']} errors")
    if skew:
        print("ordered on corrected time; estimated clock skew: "
              + ", ".join(f"{h} {ms:+d} ms" for h, ms in sorted(skew.items())))
    for e in events:
        print(_line(e))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import httpx

    from obshub.demo import CLOCK_SKEW_US, DEMO_STORY, generate

    now = time.time_ns() // 1000
    events = generate(now, run=f"demo{now // 60_000_000}")
    batch = 500
    sent = accepted = dup = 0
    width = 30
    # One stream per host, as each host's agent would send it, stamped with that host's clock.
    chunks = []
    for host in sorted({e.get("host", "") for e in events}):
        mine = [e for e in events if e.get("host", "") == host]
        chunks += [(host, mine[i:i + batch]) for i in range(0, len(mine), batch)]
    with _client(args) as c:
        for host, chunk in chunks:
            body = "\n".join(json.dumps(e) for e in chunk).encode()
            sent_at = (time.time_ns() // 1000 + CLOCK_SKEW_US.get(host, 0)) / 1e6
            try:
                r = c.post("/api/v1/ingest", content=body, headers={"Content-Type": "application/x-ndjson",
                                                                    "X-Obshub-Sent-At": f"{sent_at:.6f}"})
            except httpx.HTTPError as e:
                return _die(f"cannot reach the hub at {args.url}: {e}", 1)
            if r.status_code != 200:
                if sent:
                    print(file=sys.stderr)  # end the progress line
                return _die(_refusal(r), 1)
            res = r.json()
            accepted += res["accepted"]
            dup += res["duplicates"]
            sent += len(chunk)
            done = sent * width // len(events)
            print(f"\r[{'#' * done}{'.' * (width - done)}] {sent}/{len(events)} events", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"sent {sent} events: {accepted} stored, {dup} already there")
    print(f"try: obshub trace {DEMO_STORY['cross_host_request']}   (one request, two hosts)")
    print(f"     open {args.url}/users/{DEMO_STORY['user_id']}   (the host switch that loses the cart)")
    return 0

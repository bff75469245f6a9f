"""`obshub` command line: serve | project | token | demo | search | export | trace.

Client commands (`demo`, `search`, `export`, `trace`) talk HTTP to a running hub (`--url`, `--token`, or
OBSHUB_URL / OBSHUB_TOKEN); `serve`, `project` and `token` open the store directly, read from the
same settings as `serve` (OBSHUB_* and the OBSHUB_CONFIG file, obshub/settings.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from obshub.errors import ConfigError, Conflict, NotFound, StoreError, StoreUnavailable

if TYPE_CHECKING:  # imported where used: `obshub --help` stays fast
    import httpx

    from obshub.hub import Hub
    from obshub.settings import Settings
    from obshub.store.base import Store, TokenRecord

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8480"


def _add_client_args(p: argparse.ArgumentParser, token_help: str) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("OBSHUB_URL", DEFAULT_URL),
        help=f"hub base URL (env OBSHUB_URL; default {DEFAULT_URL})",
    )
    p.add_argument("--token", default=os.environ.get("OBSHUB_TOKEN"), help=f"{token_help} (env OBSHUB_TOKEN)")


_TIME_OPTIONS = ("--from", "--to")
_RELATIVE = re.compile(r"-\d")  # how a relative time (-15m, -7d) or a negative epoch begins


def _add_time_args(p: argparse.ArgumentParser, default_from: str | None = "-24h") -> None:
    """`--from/--to` (as `args.from_`, `args.to`) for every command with a time range. `main`
    lets their values start with '-' (`--from -7d`): see `_join_time_values`."""
    start = f"; default {default_from}" if default_from else ""
    p.add_argument(
        "--from",
        dest="from_",
        metavar="TIME",
        default=default_from,
        help=f"start: RFC 3339, an epoch number, or relative to now (-15m, -24h, -7d){start}",
    )
    p.add_argument("--to", metavar="TIME", default=None, help="end, same forms (exclusive); default now")


def _join_time_values(argv: list[str]) -> list[str]:
    """`--from -7d` -> `--from=-7d`. argparse takes any word starting with '-' (other than a
    plain negative number) for an option, so `--from -7d` would fail with "expected one
    argument"; the `=` form it accepts. Stops at `--`, after which every word is positional."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return out + argv[i:]
        if word in _TIME_OPTIONS and i + 1 < len(argv) and _RELATIVE.match(argv[i + 1]):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="URL",
        help=(
            "store URL (default, as for `serve`: OBSHUB_STORE, `store` in the OBSHUB_CONFIG file, "
            "or sqlite:///./obshub-data/obshub.db)"
        ),
    )


def _label(value: str) -> str:
    if len(value) > 200 or any(not c.isprintable() for c in value):
        raise argparse.ArgumentTypeError("at most 200 printable characters")
    return value


def _parser() -> argparse.ArgumentParser:
    from obshub.auth import SCOPES

    ap = argparse.ArgumentParser(
        prog="obshub", description="obshub: follow one request or one user across every server."
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sp = sub.add_parser(
        "serve",
        help="run the hub",
        description=(
            "Run the hub (HTTP API, ingest, web explorer). A store that is unavailable at start (cluster down "
            "or still starting) is retried for OBSHUB_STORE_WAIT_S seconds (default 60); then exit status 1. "
            "A bad setting: exit status 2, naming it."
        ),
    )
    sp.add_argument("--host", help="listen address (env OBSHUB_HOST; default 127.0.0.1)")
    sp.add_argument("--port", type=int, help="listen port (env OBSHUB_PORT; default 8480)")
    sp.add_argument("--store", help="store URL (env OBSHUB_STORE; default sqlite:///./obshub-data/obshub.db)")
    sp.add_argument("--demo", action="store_true", help="load the demo dataset into project 'default' before serving")

    pp = sub.add_parser(
        "project",
        help="manage projects",
        description=(
            "Create or list projects, in the store the hub uses (same settings as `serve`). DSNs carry "
            "public_url (OBSHUB_PUBLIC_URL; default http://host:port)."
        ),
    )
    psub = pp.add_subparsers(dest="action", metavar="ACTION", required=True)
    pc = psub.add_parser(
        "create",
        help="create a project and print its tokens as JSON",
        description=(
            "Create a project; prints {project, project_id, ingest_token, read_token, dsn} (the tokens are shown "
            "only this once; the dsn's key is a sentry token, for the Sentry endpoints only). No admin token: make "
            "one with `obshub token create --scope admin` where uptime checks are defined. With no store at the "
            "store URL, makes a new one and says so on stderr."
        ),
    )
    pc.add_argument("name")
    _add_store_arg(pc)
    pl = psub.add_parser(
        "list",
        help="list projects",
        description=(
            "List projects as JSON lines {project, project_id, dsn}. With no store at the store URL: exit status 1."
        ),
    )
    _add_store_arg(pl)

    tp = sub.add_parser(
        "token",
        help="list, create or revoke a project's tokens",
        description=(
            "Manage tokens in the store the hub uses (same settings as `serve`; with no store there: exit status 1). "
            "Secrets are shown once, at creation; the store keeps only their SHA-256, and a token is named by its "
            "id (12 hex digits of that hash). A revoked token is refused by every hub within token_cache_s "
            "(default 10 s)."
        ),
    )
    tsub = tp.add_subparsers(dest="action", metavar="ACTION", required=True)
    tl = tsub.add_parser(
        "list",
        help="list tokens (never their secrets)",
        description=(
            "Tokens as JSON lines {id, project, scope, label, created_at, revoked_at}, oldest first, revoked ones "
            "included."
        ),
    )
    tl.add_argument("--project", metavar="NAME", help="only this project's tokens (default: every project)")
    _add_store_arg(tl)
    tc = tsub.add_parser(
        "create",
        help="create a token and print it once",
        description=(
            "Create a token; prints {id, project, project_id, scope, label, token} as JSON, plus the dsn "
            "carrying a sentry key."
        ),
    )
    tc.add_argument("--project", metavar="NAME", required=True)
    tc.add_argument(
        "--scope",
        choices=SCOPES,
        required=True,
        help=(
            "ingest: send events (agents, server SDKs); sentry: a DSN key, for the Sentry endpoints only (it "
            "ships inside browser and mobile apps); read: query and web UI; admin: define uptime checks"
        ),
    )
    tc.add_argument("--label", type=_label, default="", help="what the token is for, e.g. 'agents on web-*'")
    _add_store_arg(tc)
    tv = tsub.add_parser(
        "revoke",
        help="revoke a token",
        description=(
            "Revoke a token: every hub refuses it within token_cache_s (a web session using it ends within that "
            "time too). Revoking a project's last token of a scope is allowed, with a warning. Prints the revoked "
            "token as JSON; revoking twice is not an error."
        ),
    )
    tv.add_argument("token", metavar="TOKEN_ID", help="the id from `obshub token list`, or the token itself")
    _add_store_arg(tv)

    dp = sub.add_parser(
        "demo",
        help="send a realistic demo dataset to a running hub",
        description="Send 3 hosts x 2 services x 50 users of logs, errors and analytics events.",
    )
    _add_client_args(dp, "ingest token")

    sr = sub.add_parser(
        "search",
        help="search events",
        description=("Search events with the query language, e.g. obshub search 'host:web-7' --from -7d"),
    )
    sr.add_argument("query", nargs="?", default="", help="e.g. 'level:error service:api \"timed out\"'")
    _add_time_args(sr)
    sr.add_argument("--limit", type=int, default=50, help="events to show (default 50, max 1000)")
    sr.add_argument("--json", action="store_true", help="print the API response as JSON")
    _add_client_args(sr, "read token")

    tr = sub.add_parser(
        "trace",
        help="show every event of a request or trace id, across hosts",
        description="Show every event whose request_id or trace_id is ID, oldest first.",
    )
    tr.add_argument("id")
    tr.add_argument("--json", action="store_true", help="print the API response as JSON")
    _add_client_args(tr, "read token")
    _add_export_parser(sub)
    return ap


def _die(msg: str, code: int = 2) -> int:
    print(f"obshub: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_join_time_values(sys.argv[1:] if argv is None else argv))
    try:
        code = _run(args)
        # Flushed here, not at exit: a reader that left (`| head`) raises now, into the except
        # below, instead of as "Exception ignored ... BrokenPipeError" at interpreter shutdown.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except ConfigError as e:
        return _die(f"configuration error: {e}")
    except StoreError as e:  # e.g. `serve --demo` or `project` with the store unreachable
        return _die(str(e), 1)
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    if args.command == "project":
        return _project(args)
    if args.command == "token":
        return _token(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "search":
        return _search(args)
    if args.command == "export":
        return _export(args)
    return _trace(args)


def _stdout_closed() -> int:
    """The reader of our stdout went away (`obshub search ... | head -1`): stop quietly, as a
    Unix tool killed by SIGPIPE would, with its exit status 128 + 13 = 141. Python ignores
    SIGPIPE, so the write raised instead. stdout now points at /dev/null so that the final
    flush at exit, still holding the unwritten lines, has somewhere to go."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from obshub.app import create_app
    from obshub.settings import load_settings

    settings = load_settings(host=args.host, port=args.port, store=args.store)
    _configure_logging(settings.log_level)
    app = create_app(settings)
    hub: Hub = app.state.hub
    try:
        _wait_for_store(hub.store, settings.store_wait_s)
    except StoreError as e:
        return _die(f"cannot start: {e}", 1)
    if args.demo:
        _load_demo_direct(hub, settings)
    print(f"obshub: serving on {settings.base_url} (store {settings.store.split('@')[-1]})", file=sys.stderr)
    _tune_gc()
    failed: list[BaseException] = []
    try:
        # 5 s grace: open live-tail streams must not hold a stopping hub for their full rotation.
        uvicorn.run(
            _startup_errors_to(failed, app),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=settings.keepalive_timeout_s,
        )
    except SystemExit:  # uvicorn's exit when the app's startup failed
        if not failed:
            raise
        if isinstance(failed[0], ConfigError):
            return _die(f"configuration error: {failed[0]}")
        return _die(f"cannot start: {failed[0]}", 1)
    return 0


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


def _open_store(url: str | None, create: bool = False) -> tuple[Store, Settings]:
    """The store `serve` would use (settings from OBSHUB_*, the config file, then `url`), open.
    A store that does not exist yet is made only when `create`, and then said so on stderr: a
    client command run in the wrong directory must not quietly make an empty store there."""
    from obshub.settings import Settings, load_settings
    from obshub.store import open_store

    settings = load_settings(store=url)
    store = open_store(settings.store)
    if not store.exists():
        notes = [
            note
            for note, yes in (
                ("the default", settings.store == Settings.store),
                (f"in {os.getcwd()}", store.url.startswith("sqlite:///./")),
            )
            if yes
        ]
        where = store.url + (f" ({', '.join(notes)})" if notes else "")
        if not create:
            raise NotFound(
                f"no store at {where}: point OBSHUB_STORE, `store` in the OBSHUB_CONFIG file, "
                "or --store at the hub's store"
            )
        print(f"obshub: no store at {where}: creating a new one", file=sys.stderr)
    store.open()
    return store, settings


def _project(args: argparse.Namespace) -> int:
    from obshub.auth import create_project, dsn

    store, settings = _open_store(args.store, create=args.action == "create")
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


def _token_json(t: TokenRecord, project: str) -> str:
    from obshub.events import format_ts

    return json.dumps(
        {
            "id": t.id,
            "project": project,
            "scope": t.scope,
            "label": t.label,
            "created_at": format_ts(t.created_at),
            "revoked_at": format_ts(t.revoked_at) if t.revoked_at is not None else None,
        }
    )


def _token(args: argparse.Namespace) -> int:
    from obshub import auth

    store, settings = _open_store(args.store)
    try:
        names = {p.id: p.name for p in store.list_projects()}
        project = None
        if getattr(args, "project", None) is not None:
            project = store.get_project(args.project)
            if project is None:
                return _die(f"no project {args.project!r} in {store.url} (see `obshub project list`)", 1)
        if args.action == "list":
            for t in store.list_tokens(project.id if project else None):
                print(_token_json(t, names.get(t.project_id, "")))
        elif args.action == "create":
            assert project is not None  # --project is required
            secret, t = auth.create_token(store, project, args.scope, args.label)
            out = {
                "id": t.id,
                "project": project.name,
                "project_id": project.id,
                "scope": t.scope,
                "label": t.label,
                "token": secret,
            }
            if t.scope == "sentry":
                out["dsn"] = auth.dsn(project, settings.base_url, key=secret)
            print(json.dumps(out))
            print("obshub: the token is shown only this once; store it now", file=sys.stderr)
        else:
            return _revoke(store, settings, args.token, names)
    finally:
        store.close()
    return 0


# What a project can no longer do once its last token of a scope is revoked.
_LEFT_NONE = {
    "ingest": " (its agents and SDKs can no longer send, except Sentry SDKs with a sentry key)",
    "sentry": " (Sentry SDKs can no longer send to it with a DSN key)",
    "read": " (nothing can query it or log in to it)",
    "admin": " (nothing can define or delete its uptime checks)",
}


def _revoke(store: Store, settings: Settings, ref: str, names: dict[int, str]) -> int:
    from obshub import auth
    from obshub.events import format_ts

    try:
        r = auth.revoke_token(store, ref)
    except (NotFound, Conflict) as e:
        return _die(f"{e} (see `obshub token list`)", 1)
    t, name = r.token, names.get(r.token.project_id, "")
    print(_token_json(t, name))
    what = f"{t.scope} token {t.id}" + (f" ({t.label})" if t.label else "") + f" of project {name!r}"
    if r.already:
        print(f"obshub: {what} was already revoked, at {format_ts(t.revoked_at or 0)}", file=sys.stderr)
        return 0
    print(
        f"obshub: revoked {what}; every hub refuses it within token_cache_s ({settings.token_cache_s:g} s)",
        file=sys.stderr,
    )
    if r.dsn_key:
        print(
            f"obshub: warning: this was the key of project {name!r}'s DSN: Sentry SDKs using that DSN can no "
            f"longer send; a new DSN comes with: obshub token create --project {name} --scope sentry",
            file=sys.stderr,
        )
    if r.left == 0:
        print(
            f"obshub: warning: project {name!r} has no {t.scope} token left"
            + _LEFT_NONE[t.scope]
            + f"; make one with: obshub token create --project {name} --scope {t.scope}",
            file=sys.stderr,
        )
    return 0


def _client(args: argparse.Namespace) -> httpx.Client:
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


def _refusal(r: httpx.Response, query: str | None = None) -> str:
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
    cols = f"{e['ts']}  {e.get('host', '-'):<10} {e.get('service', '-'):<10} {e['level']:<8}"
    return f"{cols} {e.get('message', '')}  {ids}".rstrip()


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
        print(
            f"(showing the newest {len(data['events'])}; raise --limit or narrow the query for more)", file=sys.stderr
        )
    return 0


def _trace(args: argparse.Namespace) -> int:
    # Encoded whole: an id is anything an app logged, and `?`, `#` or `%` in it would end or
    # change the path (`a/b?c` asked for trace `a/b`). The route decodes it back.
    data = _get(args, f"/api/v1/trace/{quote(args.id, safe='')}", {})
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
    print(
        f"trace {data['id']}: {len(events)} events, hosts {', '.join(hosts)}, "
        f"services {', '.join(data['services'])}, {data['error_count']} errors"
    )
    if skew:
        print(
            "ordered on corrected time; estimated clock skew: "
            + ", ".join(f"{h} {ms:+d} ms" for h, ms in sorted(skew.items()))
        )
    for e in events:
        print(_line(e))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import httpx

    from obshub.demo import CLOCK_SKEW_US, DEMO_STORY, generate
    from obshub.events import now_us

    now = now_us()
    events = generate(now, run=f"demo{now // 60_000_000}")
    batch = 500
    sent = accepted = dup = 0
    width = 30
    # One stream per host, as each host's agent would send it, stamped with that host's clock.
    chunks = []
    for host in sorted({e.get("host", "") for e in events}):
        mine = [e for e in events if e.get("host", "") == host]
        chunks += [(host, mine[i : i + batch]) for i in range(0, len(mine), batch)]
    with _client(args) as c:
        for host, chunk in chunks:
            body = "\n".join(json.dumps(e) for e in chunk).encode()
            sent_at = (now_us() + CLOCK_SKEW_US.get(host, 0)) / 1e6
            try:
                r = c.post(
                    "/api/v1/ingest",
                    content=body,
                    headers={"Content-Type": "application/x-ndjson", "X-Obshub-Sent-At": f"{sent_at:.6f}"},
                )
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
            print(
                f"\r[{'#' * done}{'.' * (width - done)}] {sent}/{len(events)} events",
                end="",
                file=sys.stderr,
                flush=True,
            )
    print(file=sys.stderr)
    print(f"sent {sent} events: {accepted} stored, {dup} already there")
    print(f"try: obshub trace {DEMO_STORY['cross_host_request']}   (one request, two hosts)")
    print(f"     open {args.url}/users/{DEMO_STORY['user_id']}   (the host switch that loses the cart)")
    return 0


# -- export: every match of a query, streamed from GET /api/v1/export (obshub/query/export.py)


def _add_export_parser(sub: Any) -> None:
    ex = sub.add_parser(
        "export",
        help="export every match of a query as CSV or NDJSON",
        description=(
            "Stream every event matching QUERY, oldest first, without a row cap, from the hub's export "
            "(GET /api/v1/export). CSV columns: the core fields in a fixed order, then one attrs.<key> column "
            "per attribute key of the first 1,000 rows, then `attrs` (JSON of the remaining attributes); "
            "--columns picks exact columns instead. A progress line (rows, rate) goes to stderr. With -o the "
            "export is written to a temporary file beside FILE and renamed to FILE only when complete. Exit "
            "status 1 when the hub refuses the query or the stream breaks (the hub ends an export the store "
            "failed in without its final chunk; stdout then holds a partial export, -o FILE is left untouched)."
        ),
    )
    ex.add_argument("query", nargs="?", default="", help="e.g. 'level:error service:api \"timed out\"'")
    _add_time_args(ex)  # --to defaults to the moment the export starts
    ex.add_argument("--format", choices=("csv", "ndjson"), default="csv", help="output format (default csv)")
    ex.add_argument(
        "--columns",
        default=None,
        help="CSV only: exact columns, comma-separated (core fields, attrs.KEY or a bare attribute "
        "key, `attrs` for the rest), e.g. ts,host,message,attrs.duration_ms",
    )
    ex.add_argument(
        "--spreadsheet",
        action="store_true",
        help="CSV only: prefix cells starting with = + - @ with ' so spreadsheets do not run them",
    )
    ex.add_argument("-o", "--output", metavar="FILE", default=None, help="write to FILE instead of stdout")
    _add_client_args(ex, "read token")


class _ExportProgress:
    """Counts the rows streamed so far and reports them on stderr: a line rewritten in place every
    0.5 s on a terminal, a line every 10 s otherwise (logs of cron jobs stay short)."""

    def __init__(self, csv: bool) -> None:
        self.csv = csv
        self.tty = sys.stderr.isatty()
        self.every = 0.5 if self.tty else 10.0
        self.started = self.last = time.monotonic()
        self.lines = 0  # CSV: record ends (newlines outside quotes), the header included
        self.in_quotes = False  # CSV: a quoted cell (a message with newlines, say) spans chunks

    @property
    def rows(self) -> int:
        return max(0, self.lines - 1) if self.csv else self.lines

    def feed(self, data: bytes) -> None:
        if not self.csv:
            self.lines += data.count(b"\n")
        else:
            # A newline ends a record only outside quotes; quotes inside a cell come doubled, so the
            # parity of the quotes seen so far says whether we are inside one.
            *ended, tail = data.split(b"\n")
            for seg in ended:
                self.in_quotes ^= seg.count(b'"') % 2 == 1
                if not self.in_quotes:
                    self.lines += 1
            self.in_quotes ^= tail.count(b'"') % 2 == 1
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(
                ("\r" if self.tty else "") + self._status(now),
                end="" if self.tty else "\n",
                file=sys.stderr,
                flush=True,
            )

    def _status(self, now: float) -> str:
        took = max(now - self.started, 1e-6)
        return f"exported {self.rows:,} rows in {took:.1f} s ({self.rows / took:,.0f} rows/s)"

    def done(self, suffix: str = "") -> None:
        print(("\r" if self.tty else "") + self._status(time.monotonic()) + suffix, file=sys.stderr, flush=True)


def _export(args: argparse.Namespace) -> int:
    import tempfile
    from typing import BinaryIO

    import httpx

    params = {
        "q": args.query,
        "from": args.from_,
        "to": args.to,
        "format": args.format,
        "columns": args.columns,
        "spreadsheet": "1" if args.spreadsheet else None,
    }
    tmp = None
    sink: BinaryIO
    if args.output:
        target = os.path.abspath(args.output)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.", suffix=".part")
        sink = os.fdopen(fd, "wb")
    else:
        sink = sys.stdout.buffer
    progress = _ExportProgress(args.format == "csv")
    complete = answered = False
    try:
        with (
            _client(args) as c,
            c.stream(
                "GET",
                "/api/v1/export",
                params={k: v for k, v in params.items() if v is not None},
                timeout=httpx.Timeout(30, read=600),
            ) as r,
        ):
            if r.status_code != 200:
                r.read()
                return _die(_refusal(r, args.query), 1)
            answered = True
            for data in r.iter_bytes():
                sink.write(data)
                progress.feed(data)
        sink.flush()
        if tmp is not None:
            os.fsync(sink.fileno())
        complete = True
    except httpx.HTTPError as e:
        if not answered:
            return _die(f"cannot reach the hub at {args.url}: {e}", 1)
        progress.done()
        where = f"{args.output} left untouched" if tmp is not None else "stdout holds a partial export"
        return _die(
            f"export incomplete: the stream broke after {progress.rows:,} rows ({e}; the hub's log says why); {where}",
            1,
        )
    except BrokenPipeError:  # `obshub export ... | head`: the reader is gone, nothing left to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if tmp is not None:
            sink.close()
            if complete:
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(tmp, 0o666 & ~mask)  # as `> FILE` would create it, not mkstemp's 0600
                os.replace(tmp, os.path.abspath(args.output))
            else:
                os.unlink(tmp)
    progress.done(f" to {args.output}" if args.output else "")
    return 0

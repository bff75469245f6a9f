"""The `obshub` argument parser: every command's options, and the pre-pass that lets a relative
time be its own argument (`--from -7d`)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

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


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of processes, not {value!r}") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"1 to 64, not {n}")
    return n


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
    sp.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help=(
            "worker processes serving the port, each a whole hub with its own event loop and store writer "
            "(default 1). N > 1: a supervisor starts them (the first alone, then the others), replaces one "
            "that exits, stops them on SIGTERM/SIGINT, and exits 1 after 5 failed starts in a row; /metrics "
            "answers for all of them. OpenSearch store only: SQLite has one writer, which owns its file"
        ),
    )

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
    _add_alerts_parser(sub)
    return ap


def _die(msg: str, code: int = 2) -> int:
    print(f"obshub: {msg}", file=sys.stderr)
    return code


def _add_alerts_parser(sub: Any) -> None:
    al = sub.add_parser("alerts", help="alerting: send a test notification", description="Alerting (docs/alerting.md).")
    asub = al.add_subparsers(dest="action", metavar="ACTION", required=True)
    at = asub.add_parser(
        "test",
        help="send a test notification through a rule's notifiers",
        description=(
            "Send one test alert (labels alertname=RULE, project, the rule's labels, test=true) to each notifier "
            "the rule RULE names in `notify` (none named: every [[notifiers]] table), one attempt each, and print "
            "what happened per notifier. RULE is an [[alerts]] rule of the config file (OBSHUB_CONFIG) or, when "
            "none has that name, a rule created over the API, read from the hub's store. Alertmanager gets "
            "it firing for 5 minutes. Exit status 0 if every delivery succeeded, 1 if one failed, 2 for an "
            "unknown rule or a bad config."
        ),
    )
    at.add_argument("rule", help="the rule's name (an [[alerts]] table's or an API rule's)")
    at.add_argument("--project", default=None, help="the rule's project, when rules of several have this name")
    at.add_argument("--store", default=None, help="the hub's store, for API rules (default: as `serve` finds it)")


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

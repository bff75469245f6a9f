"""Uptime checks over any `Store`: definitions, and the status the API reports.

Everything is an event, so no Store protocol change was needed (docs/uptime.md):

- a probe result is `kind=check`, `name=<check>`, `attrs.up` true/false, `attrs.latency_ms`,
  `attrs.status`, with the id `check:<project_id>:<name>:<slot>` (written by `jobs/uptime.py`);
- a check defined with `POST /api/v1/checks` is `kind=check`, `attrs.definition=true`, id
  `checkdef:<project_id>:<name>:<µs>`; the newest one per name wins, `attrs.deleted=true` is a
  tombstone. The hub writes definitions with `received_at = 0`, which HTTP ingest can never
  produce (it always stamps the receive time), so an ingest token cannot make the hub probe a
  URL or hide a check by sending look-alike events;
- checks from the hub config file (`[[checks]]`) are not stored and win over a stored one of the
  same name.

Uptime = results with `attrs.up:true` / all results in the window, as a percentage: the share of
probes that passed, not of wall time (a window where no hub ran counts for nothing).
"""

from __future__ import annotations

import re
import socket
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from obshub.errors import Conflict, ConfigError, NotFound, QueryError
from obshub.events import format_ts
from obshub.ingest import pipeline
from obshub.store.base import Project, SearchRequest, Store
from obshub.store.querylang import And, Field, Node

__all__ = [
    "Check",
    "CheckError",
    "MIN_INTERVAL_S",
    "blank_event",
    "check_status",
    "config_checks",
    "define_check",
    "delete_check",
    "list_checks",
    "parse_check",
    "project_checks",
    "public_target",
    "results_query",
    "stored_checks",
    "write_definition",
]

MIN_INTERVAL_S = 5  # below this a check is a load test of its target, not a health probe
MAX_INTERVAL_S = 86_400
DEFAULT_INTERVAL_S = 60
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
SERVICE = "obshub-uptime"  # `service` of every check event the hub writes
_DEFS_CAP = 10_000  # definition events read per project (one per POST/DELETE/refresh)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # ids stay <= 128 chars; a label value
_FIELDS = ("name", "target", "interval_s", "timeout_s", "expect_status", "expect_body", "project")
_WINDOWS_S = (("uptime_24h", 86_400), ("uptime_7d", 7 * 86_400), ("uptime_30d", 30 * 86_400))


class CheckError(ValueError):
    """A check definition is invalid; `field` names the offending key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Check:
    name: str
    target: str  # http(s)://… (GET) or tcp://host:port (connect)
    interval_s: int = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    expect_status: tuple[int, ...] = ()  # empty: any status < 400 is up
    expect_body: str | None = None  # substring the body must contain
    project: str = "default"  # project name (config-file checks); API checks: the token's
    source: str = "config"  # config | api
    defined_at: int = 0  # µs of the definition event (api checks), for the retention refresh

    @property
    def is_tcp(self) -> bool:
        return self.target.startswith("tcp://")

    @property
    def offset_s(self) -> int:
        """Fixed per-check phase inside the interval (same on every replica, so slots agree),
        so a hundred 60 s checks do not all fire at :00."""
        return zlib.crc32(f"{self.project}/{self.name}".encode()) % self.interval_s

    def slot(self, t: float) -> int:
        """The interval number `t` (epoch seconds) falls in: one stored result per slot."""
        return int((t - self.offset_s) // self.interval_s)

    def slot_start(self, slot: int) -> float:
        return slot * self.interval_s + self.offset_s

    def definition(self) -> dict[str, Any]:
        """The fields a user wrote (what POST takes and what a definition event stores)."""
        out: dict[str, Any] = {"name": self.name, "target": self.target, "interval_s": self.interval_s,
                               "timeout_s": self.timeout_s}
        if self.expect_status:
            out["expect_status"] = list(self.expect_status)
        if self.expect_body is not None:
            out["expect_body"] = self.expect_body
        return out


def _target(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise CheckError("target", "expected a URL: http://…, https://… or tcp://host:port")
    target = raw.strip()
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError as e:
        raise CheckError("target", f"not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https", "tcp"):
        raise CheckError("target", f"scheme {parts.scheme or '(none)'!r} not supported: use http, https or tcp")
    if not parts.hostname:
        raise CheckError("target", "has no host")
    if parts.scheme == "tcp" and (port is None or parts.path not in ("", "/") or parts.query):
        raise CheckError("target", "a TCP check is tcp://host:port")
    return target


def _number(raw: Any, field: str, lo: float, hi: float, integer: bool) -> Any:
    ok = isinstance(raw, int) if integer else isinstance(raw, (int, float))
    if not ok or isinstance(raw, bool) or not lo <= raw <= hi:
        what = "an integer" if integer else "a number"
        raise CheckError(field, f"expected {what} from {lo:g} to {hi:g}, got {raw!r}")
    return raw


def parse_check(raw: Any, source: str = "config", project: str | None = None) -> Check:
    """Validate one definition (a `[[checks]]` table or a POST body). Raises CheckError."""
    if not isinstance(raw, Mapping):
        raise CheckError("body", f"expected an object, got {type(raw).__name__}")
    for key in raw:
        if key not in _FIELDS:
            raise CheckError(str(key), f"unknown field (expected {', '.join(_FIELDS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise CheckError("name", "required: 1-64 characters of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    target = _target(raw.get("target"))
    interval = _number(raw.get("interval_s", DEFAULT_INTERVAL_S), "interval_s", MIN_INTERVAL_S, MAX_INTERVAL_S, True)
    timeout = float(_number(raw.get("timeout_s", min(DEFAULT_TIMEOUT_S, interval)), "timeout_s", 0.1,
                            min(MAX_TIMEOUT_S, interval), False))
    http = not target.startswith("tcp://")
    statuses: tuple[int, ...] = ()
    if raw.get("expect_status") is not None:
        es = raw["expect_status"]
        items = es if isinstance(es, list) else [es]
        if not http:
            raise CheckError("expect_status", "only for http(s) targets")
        if not items or not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in items):
            raise CheckError("expect_status", f"expected an HTTP status 100-599 or a list of them, got {es!r}")
        statuses = tuple(items)
    body = raw.get("expect_body")
    if body is not None:
        if not http:
            raise CheckError("expect_body", "only for http(s) targets")
        if not isinstance(body, str) or not 1 <= len(body) <= 1024:
            raise CheckError("expect_body", "expected a string of 1-1024 characters")
    proj = raw.get("project", "default")
    if not isinstance(proj, str) or not proj:
        raise CheckError("project", "expected a project name")
    if project is not None:  # API: the token decides the project
        if "project" in raw and proj != project:
            raise CheckError("project", f"a check is created in the token's project ({project!r}); omit the field")
        proj = project
    return Check(name=name, target=target, interval_s=interval, timeout_s=timeout, expect_status=statuses,
                 expect_body=body, project=proj, source=source)


def config_checks(raw: Sequence[Mapping[str, Any]]) -> list[Check]:
    """`Settings.checks` -> Checks; a bad table stops the hub at start, naming it and the key."""
    out: list[Check] = []
    seen: set[tuple[str, str]] = set()
    for i, table in enumerate(raw):
        where = f"[[checks]] #{i + 1}" + (f" ({table['name']!r})" if isinstance(table, Mapping) and
                                          isinstance(table.get("name"), str) else "")
        try:
            check = parse_check(table)
        except CheckError as e:
            raise ConfigError(f"OBSHUB_CONFIG: {where}: {e}") from None
        if (check.project, check.name) in seen:
            raise ConfigError(f"OBSHUB_CONFIG: {where}: name: {check.name!r} is declared twice "
                              f"in project {check.project!r}")
        seen.add((check.project, check.name))
        out.append(check)
    return out


def public_target(target: str) -> str:
    """The target with any password masked: it goes into messages, attrs and API answers."""
    parts = urlsplit(target)
    if parts.password is None:
        return target
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@cache
def hub_host() -> str:
    return socket.gethostname()


def blank_event() -> dict[str, Any]:
    """The fields every check event the hub writes shares, in the form a client would send:
    it is stored through the ingest pipeline like everything else (obshub/ingest/pipeline.py)."""
    return {"kind": "check", "level": "info", "service": SERVICE, "host": hub_host(), "logger": "obshub.checks",
            "attrs": {}}


# -- definitions -------------------------------------------------------------------------------

def write_definition(store: Store, project_id: int, name: str, check: Check | None, at_us: int) -> bool:
    """Store a definition (or, with check=None, a tombstone). False if that id already existed
    (a concurrent replica wrote the same refresh)."""
    ev = blank_event()
    attrs: dict[str, Any] = {"definition": True, "deleted": check is None}
    if check is None:
        message = f"check {name} deleted"
    else:
        attrs.update(check.definition())
        verb = "connect" if check.is_tcp else "GET"
        message = f"check {name} defined: {verb} {public_target(check.target)} every {check.interval_s} s"
    ev.update(id=f"checkdef:{project_id}:{name}:{at_us}", ts=at_us, name=name, message=message, attrs=attrs)
    return pipeline.store_events(store, project_id, [ev], received_at=0).accepted == 1


def stored_checks(store: Store, project_id: int, project_name: str) -> dict[str, Check]:
    """The project's API-defined checks: newest definition per name, tombstones dropped."""
    query = And((Field("kind", "=", "check"), Field("attrs.definition", "=", "true")))
    seen: set[str] = set()
    out: dict[str, Check] = {}
    after = None
    read = 0
    while read < _DEFS_CAP:
        page = store.search(project_id, SearchRequest(query, None, None, 1000, after, False))
        for ev in page:
            name = ev.get("name")
            if ev.get("received_at") != 0 or not name or name in seen:
                continue  # not written by a hub (see module docstring), or an older version
            seen.add(name)
            attrs = ev.get("attrs") or {}
            if attrs.get("deleted"):
                continue
            raw = {k: attrs[k] for k in _FIELDS if k in attrs and k != "project"}
            raw["name"] = name
            try:
                check = parse_check(raw, "api", project_name)
            except CheckError:
                continue  # written under other rules (a later version); never probe it half-read
            out[name] = replace(check, defined_at=ev["ts"])
        read += len(page)
        if len(page) < 1000:
            break
        after = (page[-1]["ts"], page[-1]["id"])
    return out


def project_checks(store: Store, project: Project, config: Sequence[Check]) -> list[Check]:
    """Config-file checks of this project, then its stored ones not shadowed by a config name."""
    mine = [c for c in config if c.project == project.name]
    names = {c.name for c in mine}
    stored = stored_checks(store, project.id, project.name)
    return mine + sorted((c for n, c in stored.items() if n not in names), key=lambda c: c.name)


# -- status ------------------------------------------------------------------------------------

def results_query(name: str) -> Node:
    """Every probe result of a check (definitions carry no `attrs.up`)."""
    return And((Field("kind", "=", "check"), Field("name", "=", name, True), Field("attrs.up", "exists")))


def check_status(store: Store, project_id: int, check: Check, now_us: int) -> dict[str, Any]:
    results = results_query(check.name)
    latest = store.search(project_id, SearchRequest(results, None, None, 1))
    last = latest[0] if latest else None
    attrs = last["attrs"] if last else {}
    out: dict[str, Any] = {
        "name": check.name,
        "target": public_target(check.target),
        "up": bool(attrs["up"]) if last else None,
        "last_checked": format_ts(last["ts"]) if last else None,
        "latency_ms": attrs.get("latency_ms"),
        "status": attrs.get("status"),
        "message": last["message"] if last else None,
    }
    for key, span_s in _WINDOWS_S:
        start = now_us - span_s * 1_000_000
        total = store.count(project_id, results, start, now_us + 1) if last else 0
        if not total:
            out[key] = None
            continue
        up = store.count(project_id, And((results, Field("attrs.up", "=", "true"))), start, now_us + 1)
        out[key] = round(100.0 * up / total, 3)
    out.update(interval_s=check.interval_s, timeout_s=check.timeout_s,
               expect_status=list(check.expect_status) or None, expect_body=check.expect_body, source=check.source)
    return out


def list_checks(store: Store, project: Project, config: Sequence[Check], now_us: int) -> dict[str, Any]:
    return {"checks": [check_status(store, project.id, c, now_us) for c in project_checks(store, project, config)]}


def _in_config(config: Sequence[Check], project: Project, name: str) -> bool:
    return any(c.project == project.name and c.name == name for c in config)


def define_check(store: Store, project: Project, body: Any, config: Sequence[Check],
                 now_us: int) -> tuple[dict[str, Any], bool]:
    """POST: create or replace an API check. Returns (its status, created?)."""
    try:
        check = parse_check(body, "api", project.name)
    except CheckError as e:
        raise QueryError(str(e)) from None
    if _in_config(config, project, check.name):
        raise Conflict(f"name: check {check.name!r} is declared in the hub config file; change it there")
    created = check.name not in stored_checks(store, project.id, project.name)
    if not write_definition(store, project.id, check.name, check, now_us):
        raise Conflict(f"name: check {check.name!r} was changed at the same microsecond; retry")
    return check_status(store, project.id, check, now_us), created


def delete_check(store: Store, project: Project, name: str, config: Sequence[Check], now_us: int) -> dict[str, Any]:
    if _in_config(config, project, name):
        raise Conflict(f"check {name!r} is declared in the hub config file; remove it there")
    if name not in stored_checks(store, project.id, project.name):
        raise NotFound(f"no check named {name!r}")
    write_definition(store, project.id, name, None, now_us)
    return {"deleted": name}

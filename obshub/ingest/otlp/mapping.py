"""The mapping both OTLP encodings share: one resource's attributes -> the event fields, one log
record or span (as plain Python values, read by protobuf.py or protojson.py) -> obshub events,
validated by `events.normalize` like every other event (docs/otlp.md has the table); and the
record loop both encodings run (`collect`: numbering, refusals per record)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from obshub.errors import BodyError, FieldError
from obshub.events import Limits, NormalizedEvent, normalize, normalize_level
from obshub.ingest import pipeline
from obshub.settings import Settings

_RESOURCE_FIELDS = (
    ("service.name", "service"),
    ("host.name", "host"),
    ("deployment.environment.name", "env"),
    ("deployment.environment", "env"),
    ("service.version", "release"),
)
# Semantic-convention names first, then obshub's own: an app that logged `extra={"user_id": …}`
# through obshub_sdk or the agent keeps its correlation keys when it moves to OTel's LoggingHandler
# (or Fluent Bit's opentelemetry output with `logs_body_key_attributes`).
_USER_KEYS = ("enduser.id", "user.id", "user_id")
_SESSION_KEYS = ("session.id", "session_id")
_REQUEST_KEYS = ("request_id", "http.request.id")
_ID_FIELD = {
    key: field
    for field, keys in (("user_id", _USER_KEYS), ("session_id", _SESSION_KEYS), ("request_id", _REQUEST_KEYS))
    for key in keys
}
_ID_RANK = {key: i for i, key in enumerate(_ID_FIELD)}  # the first name of a field wins
_ID_KEYS = frozenset(_ID_FIELD)
_EXCEPTION_KEYS = ("exception.type", "exception.message", "exception.stacktrace", "exception.escaped")
# what `_correlate` looks for
_CORRELATED = frozenset((*_USER_KEYS, *_SESSION_KEYS, *_REQUEST_KEYS, *_EXCEPTION_KEYS[:3]))
SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("unset", "ok", "error")
_SERVER = 2


# -- one resource, one record -------------------------------------------------------------------


@dataclass
class Resource:
    fields: dict[str, str]  # service, host, env, release
    attrs: dict[str, Any]  # the other resource attributes


def resource_of(attrs: dict[str, Any]) -> Resource:
    fields: dict[str, str] = {}
    for key, field in _RESOURCE_FIELDS:
        v = attrs.pop(key, None)
        if v is not None and field not in fields:
            fields[field] = v if isinstance(v, str) else str(v)
    return Resource(fields, attrs)


# OTLP SeverityNumber 1-24 -> level: TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20,
# FATAL 21-24 (index 0: unset).
_SEVERITY_LEVELS = ("", *(lv for lv in ("debug", "debug", "info", "warning", "error", "critical") for _ in range(4)))


def _level(number: int, text: str) -> str:
    """The level of a SeverityNumber; unset (0) or out of range: the severity text when it
    names a level, else info."""
    if 0 < number < 25:
        return _SEVERITY_LEVELS[number]
    if text:
        try:
            return normalize_level(text)
        except FieldError:
            pass
    return "info"


def _ts_us(ns: int) -> int | None:
    return ns // 1000 if ns > 0 else None


def _correlate(ev: dict[str, Any], attrs: dict[str, Any], errors: bool = True) -> None:
    """user, session and request ids out of the attributes (the first name present wins; another
    name of the same field stays an attribute); exception.* attributes -> the error (not on a
    span itself: there they stay attributes of the span)."""
    found = _ID_KEYS.intersection(attrs)  # usually none or one: a set operation, not 7 lookups
    if found:
        for key in sorted(found, key=_ID_RANK.__getitem__) if len(found) > 1 else found:
            field = _ID_FIELD[key]
            if field not in ev:
                v = attrs.pop(key)
                ev[field] = v if isinstance(v, str) else str(v)
    if errors and ("exception.type" in attrs or "exception.message" in attrs or "exception.stacktrace" in attrs):
        typ, value, stack = (attrs.pop(k, None) for k in _EXCEPTION_KEYS[:3])
        attrs.pop("exception.escaped", None)
        ev["kind"] = "error"
        ev["error"] = {
            "type": None if typ is None else str(typ),
            "value": None if value is None else str(value),
            # Traceback text: digest/ parses it into the frames an SDK sends, so the same
            # exception lands in the same group as through Sentry or the agent.
            "stack": stack if isinstance(stack, str) and stack else None,
        }


def log_event(
    res: Resource,
    scope: str,
    time_ns: int,
    observed_ns: int,
    severity: int,
    severity_text: str,
    body: Any,
    attrs: dict[str, Any],
    trace_id: str | None,
    span_id: str | None,
    event_name: str,
    event_id: str,
    received_at: int,
    limits: Limits,
) -> NormalizedEvent:
    level = _SEVERITY_LEVELS[severity] if 0 < severity < 25 else _level(severity, severity_text)
    ev: dict[str, Any] = {**res.fields, "id": event_id, "level": level}
    if time_ns >= 1000:  # (below a µs: as no time, the observed time then)
        ev["ts"] = time_ns // 1000
    elif observed_ns > 0:
        ev["ts"] = observed_ns // 1000
    if scope:
        ev["logger"] = scope
    if event_name:
        ev["name"] = event_name
    if trace_id:
        ev["trace_id"] = trace_id
    if span_id:
        ev["span_id"] = span_id
    if isinstance(body, str):
        ev["message"] = body
    elif isinstance(body, dict):  # structured: its message (if any) and the rest as body.*
        key = "message" if "message" in body else "msg"
        msg = body.get(key)
        if isinstance(msg, str):
            ev["message"] = msg
            body = {k: v for k, v in body.items() if k != key}
        if body:
            attrs["body"] = body
    elif body is not None:
        if isinstance(body, list):
            attrs["body"] = body
        else:
            ev["message"] = str(body)
    if not _CORRELATED.isdisjoint(attrs):
        _correlate(ev, attrs)
    ev["attrs"] = {**res.attrs, **attrs} if res.attrs else attrs
    return normalize(ev, received_at, limits)


def span_events(
    res: Resource,
    scope: str,
    trace_id: str | None,
    span_id: str | None,
    parent_id: str | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    status_code: int,
    status_message: str,
    attrs: dict[str, Any],
    events: Iterable[tuple[int, str, dict[str, Any]]],
    received_at: int,
    limits: Limits,
) -> list[NormalizedEvent]:
    """One kind=span event, then one event per span event: an error for an exception (linked to
    the span by its trace and span id), a log line for any other."""
    base: dict[str, Any] = dict(res.fields)
    if trace_id:
        base["trace_id"] = trace_id
    if span_id:
        base["span_id"] = span_id
    if scope:
        base["logger"] = scope
    ev: dict[str, Any] = {**base, "kind": "span", "name": name, "message": name}
    span_key = None
    if trace_id and span_id:
        # Derived from the span: an exporter's retry of it is a duplicate, not a second span. The
        # start time first, so a store's id index takes a batch's spans nearly in order (the
        # ids of log records are time-first for the same reason: `id_prefix`).
        span_key = ev["id"] = f"{max(start_ns, 0) // 1000:014x}{trace_id}{span_id}"
    ts = _ts_us(start_ns)
    if ts is not None:
        ev["ts"] = ts
    ev["level"] = "error" if status_code == 2 else "info"
    _correlate(ev, attrs, errors=False)
    for key in ("user_id", "session_id"):  # the span's user is its events' user too
        if key in ev:
            base[key] = ev[key]
    span_attrs: dict[str, Any] = {
        "span.kind": SPAN_KINDS[kind] if 0 <= kind < len(SPAN_KINDS) else str(kind),
        "span.status": STATUS_CODES[status_code] if 0 <= status_code < len(STATUS_CODES) else str(status_code),
    }
    if parent_id:
        span_attrs["span.parent_id"] = parent_id
    if status_message:
        span_attrs["span.status_message"] = status_message
    if end_ns >= start_ns > 0:
        span_attrs["duration_ms"] = round((end_ns - start_ns) / 1e6, 3)
    if kind == _SERVER:  # the request-level fields obshub_sdk's access lines carry
        method = attrs.get("http.request.method", attrs.get("http.method"))
        path = attrs.get("http.route", attrs.get("url.path", attrs.get("http.target")))
        status = attrs.get("http.response.status_code", attrs.get("http.status_code"))
        for key, v in (("method", method), ("path", path), ("status", status)):
            if v is not None:
                span_attrs[key] = v
    ev["attrs"] = {**res.attrs, **attrs, **span_attrs}
    out = [normalize(ev, received_at, limits)]
    for i, (time_ns, ev_name, ev_attrs) in enumerate(events):
        sub: dict[str, Any] = {**base, "message": ev_name}
        if span_key is not None:  # as the span's: a retry stores nothing twice
            sub["id"] = f"{span_key}.{i}"
        sub_ts = _ts_us(time_ns) or ts  # an event without a time: the span's start
        if sub_ts is not None:
            sub["ts"] = sub_ts
        _correlate(sub, ev_attrs)
        if sub.get("kind") == "error":
            sub["message"] = None  # normalize names it `<type>: <value>`, as every error
            sub["name"] = name  # the span it was raised in
        sub["attrs"] = ev_attrs
        out.append(normalize({k: v for k, v in sub.items() if v is not None}, received_at, limits))
    return out


def id_prefix(received_at: int) -> str:
    """The ids of one request's log records (OTLP gives them none): the receive time (14 hex
    digits), 64 random bits, then the record's number (`{prefix}{n:06x}`). Time first, so a
    store's id index takes them in order (random ids cost SQLite's `UNIQUE (project_id, id)`
    B-tree scattered inserts), and one os.urandom call per request, not per record."""
    return f"{received_at:014x}{os.urandom(8).hex()}"


def counted(n: int, settings: Settings, what: str) -> None:
    if n > settings.max_lines:
        raise BodyError(413, f"{n} {what} exceeds the limit of {settings.max_lines} per request")


Group = tuple["Resource | str", str, Iterable[Any]]  # (resource or why it is refused, scope, records)


def collect(
    groups: Iterable[Group], what: str, make: Callable[[Resource, str, Any, int], list[NormalizedEvent]]
) -> pipeline.Parsed:
    """Number the records of every scope of every resource from 1 (the position a partial
    success names), make each one's events, and collect the records refused: all of a resource
    whose attributes break a limit, and each record `make` refuses with a FieldError. Any other
    error (a malformed body) propagates: the whole request is refused."""
    events: list[NormalizedEvent] = []
    positions: list[int] = []
    problems: list[tuple[int, str]] = []
    n = 0
    for res, scope, records in groups:
        for r in records:
            n += 1
            if isinstance(res, str):
                problems.append((n, f"{what} {n}: {res}"))
                continue
            try:
                made = make(res, scope, r, n)
            except FieldError as e:
                problems.append((n, f"{what} {n}: {e}"))
                continue
            events += made
            positions += [n] * len(made)
    return pipeline.Parsed(events, positions, problems, header={"records": n})


def finite(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # NaN and infinities are text: attrs hold finite numbers


def scalar_list(values: list[Any], depth: int, limits: Limits) -> list[Any]:
    """A list of scalars as it is; nested values as their JSON text (attrs lists hold scalars)."""
    return [orjson.dumps(x).decode() if isinstance(x, (dict, list)) else x for x in values]

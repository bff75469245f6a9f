"""OTLP/HTTP ingest: `POST /v1/logs` and `POST /v1/traces` (also under `/otlp`), so an OpenTelemetry
SDK or Collector with `OTEL_EXPORTER_OTLP_ENDPOINT=http://hub:8480/otlp` sends straight to the hub.

Both encodings of the spec: `application/x-protobuf` (the classes of `opentelemetry-proto`) and
`application/json` (proto3 JSON, read here by hand: trace and span ids are hex there, and
protobuf's own JSON parser would read them as base64 without complaint; int64 values are strings).
Each encoding has its front end (`_pb_*`, `_json_*`) turning records into plain Python values;
one mapping (`_log_event`, `_span_events`) makes obshub events of them (docs/otlp.md has the table),
validated by `events.normalize` like every other event.

Answers as the OTLP spec says, in the request's encoding: 200 with an `Export*ServiceResponse`
(its `partial_success` counting the records validation or the store refused), a `google.rpc.Status`
for every error (400 malformed, 401/403, 413, 415, 429/503 with Retry-After: the retryable ones).
The path itself (auth, admission, body caps, decoding, digest, the store write, telemetry) is
obshub/ingest/pipeline.py.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from obshub.auth import bearer
from obshub.errors import BodyError, FieldError, ParseError
from obshub.events import Limits, NormalizedEvent, normalize, normalize_level
from obshub.hub import hub_of
from obshub.ingest import pipeline
from obshub.settings import Settings

__all__ = ["PROTOBUF", "parse_json_logs", "parse_json_traces", "parse_pb_logs", "parse_pb_traces", "routes"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ENCODINGS = ("identity", "gzip", "deflate", "zstd")
_MAX_PROBLEMS = 5  # problems named in a partial success's error_message (the count is exact)

# Resource attribute -> event field. The first of a field's names present wins.
_RESOURCE_FIELDS = (
    ("service.name", "service"),
    ("host.name", "host"),
    ("deployment.environment.name", "env"),
    ("deployment.environment", "env"),
    ("service.version", "release"),
)
_USER_KEYS = ("enduser.id", "user.id")
_SESSION_KEYS = ("session.id",)
_EXCEPTION_KEYS = ("exception.type", "exception.message", "exception.stacktrace", "exception.escaped")
_SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUS = ("unset", "ok", "error")
_SERVER = 2


# -- one resource, one record: the mapping both encodings share -------------------------------


@dataclass
class _Resource:
    fields: dict[str, str]  # service, host, env, release
    attrs: dict[str, Any]  # the other resource attributes


def _resource(attrs: dict[str, Any]) -> _Resource:
    fields: dict[str, str] = {}
    for key, field in _RESOURCE_FIELDS:
        v = attrs.pop(key, None)
        if v is not None and field not in fields:
            fields[field] = v if isinstance(v, str) else str(v)
    return _Resource(fields, attrs)


def _level(number: int, text: str) -> str:
    """OTLP SeverityNumber 1-24 (TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20,
    FATAL 21-24); unset (0): the severity text when it names a level, else info."""
    if 1 <= number <= 24:
        return ("debug", "debug", "info", "warning", "error", "critical")[(number - 1) // 4]
    if text:
        try:
            return normalize_level(text)
        except FieldError:
            pass
    return "info"


def _ts_us(ns: int) -> int | None:
    return ns // 1000 if ns > 0 else None


def _correlate(ev: dict[str, Any], attrs: dict[str, Any], errors: bool = True) -> None:
    """user and session ids out of the attributes; exception.* attributes -> the error (not on a
    span itself: there they stay attributes of the span)."""
    for key in _USER_KEYS:
        if key in attrs:
            v = attrs.pop(key)
            ev.setdefault("user_id", v if isinstance(v, str) else str(v))
    for key in _SESSION_KEYS:
        if key in attrs:
            v = attrs.pop(key)
            ev["session_id"] = v if isinstance(v, str) else str(v)
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


def _log_event(
    res: _Resource,
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
    ev: dict[str, Any] = {**res.fields, "id": event_id, "level": _level(severity, severity_text)}
    ts = _ts_us(time_ns) or _ts_us(observed_ns)
    if ts is not None:
        ev["ts"] = ts
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
    _correlate(ev, attrs)
    ev["attrs"] = {**res.attrs, **attrs} if res.attrs else attrs
    return normalize(ev, received_at, limits)


def _span_events(
    res: _Resource,
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
        # ids of log records are time-first for the same reason: `_id_prefix`).
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
        "span.kind": _SPAN_KINDS[kind] if 0 <= kind < len(_SPAN_KINDS) else str(kind),
        "span.status": _STATUS[status_code] if 0 <= status_code < len(_STATUS) else str(status_code),
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


# -- protobuf front end -----------------------------------------------------------------------


_PB_SCALARS = frozenset(("string_value", "int_value", "bool_value"))


def _pb_value(v: AnyValue, depth: int, limits: Limits) -> Any:
    which = v.WhichOneof("value")
    if which in _PB_SCALARS:
        return getattr(v, which)
    if which == "double_value":
        return _finite(v.double_value)
    if which == "kvlist_value":
        return _pb_attrs(v.kvlist_value.values, depth + 1, limits)
    if which == "array_value":
        if depth > limits.max_attr_depth:
            raise FieldError("arrayValue", f"nested deeper than the limit of {limits.max_attr_depth}")
        return _array([_pb_value(x, depth + 1, limits) for x in v.array_value.values], depth, limits)
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def _pb_attrs(kvs: Iterable[KeyValue], depth: int, limits: Limits) -> dict[str, Any]:
    if depth > limits.max_attr_depth:
        raise FieldError("attributes", f"nested deeper than the limit of {limits.max_attr_depth}")
    out: dict[str, Any] = {}
    scalars = _PB_SCALARS
    for kv in kvs:
        # Each attribute costs ~0.5 µs in upb's wrappers alone (measured: 5 attributes 2.6 µs of
        # the ~3.5 µs this takes): the scalars are read inline, without the generic call.
        v = kv.value
        which = v.WhichOneof("value")
        out[kv.key] = getattr(v, which) if which in scalars else _pb_value(v, depth, limits)
    return out


def _pb_id(raw: bytes, size: int, field: str) -> str | None:
    """Bytes -> lowercase hex; empty or all zero: no id."""
    if not raw or not raw.strip(b"\0"):
        return None
    if len(raw) != size:
        raise FieldError(field, f"expected {size} bytes, got {len(raw)}")
    return raw.hex()


def _id_prefix(received_at: int) -> str:
    """The ids of one request's log records (OTLP gives them none): the receive time (14 hex
    digits), 64 random bits, then the record's number (`{prefix}{n:06x}`). Time first, so a
    store's id index takes them in order (random ids cost SQLite's `UNIQUE (project_id, id)`
    B-tree scattered inserts), and one os.urandom call per request, not per record."""
    return f"{received_at:014x}{os.urandom(8).hex()}"


def _counted(n: int, settings: Settings, what: str) -> None:
    if n > settings.max_lines:
        raise BodyError(413, f"{n} {what} exceeds the limit of {settings.max_lines} per request")


Group = tuple["_Resource | str", str, Iterable[Any]]  # (resource or why it is refused, scope, records)


def _collect(
    groups: Iterable[Group], what: str, make: Callable[[_Resource, str, Any, int], list[NormalizedEvent]]
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


def _pb_groups(resources: Iterable[Any], scopes: str, records: str, limits: Limits) -> Iterable[Group]:
    """The protobuf twin of `_json_groups`: (resource, scope name, records) per scope."""
    for ro in resources:
        try:
            res: _Resource | str = _resource(_pb_attrs(ro.resource.attributes, 1, limits))
        except FieldError as e:  # over a limit: every record of the resource is refused
            res = f"resource: {e}"
        for so in getattr(ro, scopes):
            yield res, so.scope.name, getattr(so, records)


def parse_pb_logs(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    req = ExportLogsServiceRequest()
    try:
        req.ParseFromString(body)
    except DecodeError as e:
        raise ParseError(f"body is not an OTLP ExportLogsServiceRequest (protobuf): {e}") from None
    limits = settings.limits
    total = sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
    _counted(total, settings, "log records")
    ids = _id_prefix(received_at)

    def make(res: _Resource, scope: str, r: Any, n: int) -> list[NormalizedEvent]:
        return [
            _log_event(
                res,
                scope,
                r.time_unix_nano,
                r.observed_time_unix_nano,
                r.severity_number,
                r.severity_text,
                _pb_value(r.body, 1, limits),
                _pb_attrs(r.attributes, 1, limits),
                _pb_id(r.trace_id, 16, "traceId"),
                _pb_id(r.span_id, 8, "spanId"),
                getattr(r, "event_name", ""),  # (older opentelemetry-proto releases lack it)
                f"{ids}{n:06x}",
                received_at,
                limits,
            )
        ]

    return _collect(_pb_groups(req.resource_logs, "scope_logs", "log_records", limits), "log record", make)


def parse_pb_traces(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except DecodeError as e:
        raise ParseError(f"body is not an OTLP ExportTraceServiceRequest (protobuf): {e}") from None
    limits = settings.limits
    _counted(
        sum(len(s.spans) + sum(len(sp.events) for sp in s.spans) for rs in req.resource_spans for s in rs.scope_spans),
        settings,
        "spans and span events",
    )

    def make(res: _Resource, scope: str, sp: Any, n: int) -> list[NormalizedEvent]:
        return _span_events(
            res,
            scope,
            _pb_id(sp.trace_id, 16, "traceId"),
            _pb_id(sp.span_id, 8, "spanId"),
            _pb_id(sp.parent_span_id, 8, "parentSpanId"),
            sp.name,
            sp.kind,
            sp.start_time_unix_nano,
            sp.end_time_unix_nano,
            sp.status.code,
            sp.status.message,
            _pb_attrs(sp.attributes, 1, limits),
            [(e.time_unix_nano, e.name, _pb_attrs(e.attributes, 1, limits)) for e in sp.events],
            received_at,
            limits,
        )

    return _collect(_pb_groups(req.resource_spans, "scope_spans", "spans", limits), "span", make)


# -- proto3 JSON front end --------------------------------------------------------------------


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A field by its lowerCamelCase name (what the spec sends) or its proto name (parsers take both)."""
    v = obj.get(camel)
    return obj.get(snake) if v is None else v


# A value of the wrong JSON type is a body that is not the message at all (protobuf's own JSON
# parser refuses it as a whole): a 400, as the OTLP spec wants for a malformed body. A value of the
# right type that fails validation (an id of the wrong length, a time past 2200, an attribute past
# the limits) rejects its record only: counted in the partial success.


def _malformed(field: str, why: str) -> ParseError:
    return ParseError(f"malformed OTLP JSON: {field}: {why}")


def _obj(v: Any, field: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _malformed(field, f"expected an object, got {type(v).__name__}")
    return v


def _item(v: Any, field: str) -> dict[str, Any]:
    """An element of a repeated message field: an object (null is no message)."""
    if not isinstance(v, dict):
        raise _malformed(field, f"expected an object, got {'null' if v is None else type(v).__name__}")
    return v


def _list(v: Any, field: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise _malformed(field, f"expected a list, got {type(v).__name__}")
    return v


def _int(v: Any, field: str) -> int:
    """int64/uint64/fixed64: a JSON number or (proto3 JSON's form for 64 bits) a decimal string."""
    if v is None:
        return 0
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif (isinstance(v, str) and v.isascii() and v.lstrip("-").isdigit() and len(v) <= 20) or (
        isinstance(v, float) and v.is_integer() and abs(v) < 2**64  # (int() of an infinity raises)
    ):
        n = int(v)
    else:
        raise _malformed(field, f"expected an integer (a number or a decimal string), got {str(v)[:40]!r}")
    if not -(2**63) <= n < 2**64:
        raise _malformed(field, f"{n} does not fit in 64 bits")
    return n


def _enum(v: Any, names: Mapping[str, int], field: str) -> int:
    """An enum as its number or its name (proto3 JSON allows both)."""
    if isinstance(v, str) and v in names:
        return names[v]
    return _int(v, field)


def _str(v: Any, field: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _malformed(field, f"expected a string, got {type(v).__name__}")
    return v


def _hex_id(v: Any, size: int, field: str) -> str | None:
    """proto3 JSON ids of OTLP are hex (not base64, as protobuf's JSON mapping would have bytes):
    lowercased; empty or all zero: no id."""
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise _malformed(field, f"expected a hex string, got {type(v).__name__}")
    if len(v) != size * 2:
        raise FieldError(field, f"expected {size * 2} hex digits, got {str(v)[:40]!r}")
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        raise FieldError(field, f"expected {size * 2} hex digits, got {v!r}") from None
    return raw.hex() if raw.strip(b"\0") else None


def _finite(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # NaN and infinities are text: attrs hold finite numbers


def _array(values: list[Any], depth: int, limits: Limits) -> list[Any]:
    """A list of scalars as it is; nested values as their JSON text (attrs lists hold scalars)."""
    return [orjson.dumps(x).decode() if isinstance(x, (dict, list)) else x for x in values]


def _json_value(v: Any, depth: int, limits: Limits) -> Any:
    if not isinstance(v, dict):
        raise _malformed("value", f"an AnyValue must be an object, got {type(v).__name__}")
    if "stringValue" in v or "string_value" in v:
        return _str(_get(v, "stringValue", "string_value"), "stringValue")
    if "intValue" in v or "int_value" in v:
        n = _int(_get(v, "intValue", "int_value"), "intValue")
        if n >= 2**63:
            raise _malformed("intValue", f"{n} is out of the int64 range")
        return n
    if "boolValue" in v or "bool_value" in v:
        b = _get(v, "boolValue", "bool_value")
        if not isinstance(b, bool):
            raise _malformed("boolValue", f"expected true or false, got {str(b)[:40]!r}")
        return b
    if "doubleValue" in v or "double_value" in v:
        d = _get(v, "doubleValue", "double_value")
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            return _finite(float(d))
        if d in ("NaN", "Infinity", "-Infinity"):
            return d
        raise _malformed("doubleValue", f"expected a number, got {str(d)[:40]!r}")
    if "kvlistValue" in v or "kvlist_value" in v:
        kv = _obj(_get(v, "kvlistValue", "kvlist_value"), "kvlistValue")
        return _json_attrs(kv.get("values"), depth + 1, limits)
    if "arrayValue" in v or "array_value" in v:
        if depth > limits.max_attr_depth:
            raise FieldError("arrayValue", f"nested deeper than the limit of {limits.max_attr_depth}")
        arr = _obj(_get(v, "arrayValue", "array_value"), "arrayValue")
        return _array(
            [_json_value(x, depth + 1, limits) for x in _list(arr.get("values"), "arrayValue")], depth, limits
        )
    if "bytesValue" in v or "bytes_value" in v:
        return _str(_get(v, "bytesValue", "bytes_value"), "bytesValue")  # base64 text, kept as sent
    return None


def _json_attrs(kvs: Any, depth: int, limits: Limits) -> dict[str, Any]:
    if depth > limits.max_attr_depth:
        raise FieldError("attributes", f"nested deeper than the limit of {limits.max_attr_depth}")
    out: dict[str, Any] = {}
    for kv in _list(kvs, "attributes"):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise _malformed("attributes", 'each attribute must be {"key": "...", "value": {...}}')
        value = kv.get("value")
        out[kv["key"]] = None if value is None else _json_value(value, depth, limits)
    return out


_SEVERITIES = {
    f"SEVERITY_NUMBER_{name}{i or ''}": n
    for n, (name, i) in enumerate(
        [("UNSPECIFIED", 0)]
        + [(lv, i) for lv in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL") for i in (0, 2, 3, 4)]
    )
}
_KIND_NAMES = {f"SPAN_KIND_{k.upper()}": i for i, k in enumerate(_SPAN_KINDS)}
_STATUS_NAMES = {f"STATUS_CODE_{s.upper()}": i for i, s in enumerate(_STATUS)}


def _json_body(body: bytes, top: str, what: str) -> list[Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ParseError(f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ParseError(f"body must be a JSON object (an {what}), got {type(doc).__name__}")
    v = doc.get(top, doc.get("resource_logs" if top == "resourceLogs" else "resource_spans"))
    if v is None:
        return []
    if not isinstance(v, list):
        raise ParseError(f"{top}: expected a list, got {type(v).__name__}")
    return v


def _json_groups(
    items: list[Any], scopes: tuple[str, str], records: tuple[str, str], limits: Limits
) -> Iterable[tuple[_Resource | str, str, list[Any]]]:
    """(resource or why its attributes are refused, scope name, records) per scope of each resource."""
    for i, item in enumerate(items):
        ro = _item(item, f"resource {i + 1}")
        attrs = _obj(ro.get("resource"), "resource").get("attributes")
        try:
            res: _Resource | str = _resource(_json_attrs(attrs, 1, limits))
        except FieldError as e:  # over a limit: every record of the resource is refused
            res = f"resource: {e}"
        for g in _list(_get(ro, *scopes), scopes[0]):
            go = _item(g, scopes[0])
            scope = _str(_obj(go.get("scope"), "scope").get("name"), "scope.name")
            yield res, scope, _list(_get(go, *records), records[0])


def parse_json_logs(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    items = _json_body(body, "resourceLogs", "ExportLogsServiceRequest")
    limits = settings.limits
    groups = list(_json_groups(items, ("scopeLogs", "scope_logs"), ("logRecords", "log_records"), limits))
    total = sum(len(recs) for _, _, recs in groups)
    _counted(total, settings, "log records")
    ids = _id_prefix(received_at)

    def make(res: _Resource, scope: str, raw: Any, n: int) -> list[NormalizedEvent]:
        r = _item(raw, "logRecords")  # not an object: the body is malformed (400), not the record
        return [
            _log_event(
                res,
                scope,
                _int(_get(r, "timeUnixNano", "time_unix_nano"), "timeUnixNano"),
                _int(_get(r, "observedTimeUnixNano", "observed_time_unix_nano"), "observedTimeUnixNano"),
                _enum(_get(r, "severityNumber", "severity_number"), _SEVERITIES, "severityNumber"),
                _str(_get(r, "severityText", "severity_text"), "severityText"),
                None if r.get("body") is None else _json_value(r["body"], 1, limits),
                _json_attrs(r.get("attributes"), 1, limits),
                _hex_id(_get(r, "traceId", "trace_id"), 16, "traceId"),
                _hex_id(_get(r, "spanId", "span_id"), 8, "spanId"),
                _str(_get(r, "eventName", "event_name"), "eventName"),
                f"{ids}{n:06x}",
                received_at,
                limits,
            )
        ]

    return _collect(groups, "log record", make)


def _events_of(span: Any) -> list[Any]:
    events = span.get("events") if isinstance(span, dict) else None
    return events if isinstance(events, list) else []


def parse_json_traces(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    items = _json_body(body, "resourceSpans", "ExportTraceServiceRequest")
    limits = settings.limits
    groups = list(_json_groups(items, ("scopeSpans", "scope_spans"), ("spans", "spans"), limits))
    _counted(
        sum(1 + len(_events_of(sp)) for _, _, recs in groups for sp in recs),
        settings,
        "spans and span events",
    )

    def make(res: _Resource, scope: str, raw: Any, n: int) -> list[NormalizedEvent]:
        sp = _item(raw, "spans")  # not an object: the body is malformed (400), not the span
        status = _obj(sp.get("status"), "status")
        sub = []
        for e in _list(sp.get("events"), "events"):
            e = _item(e, "events")
            sub.append(
                (
                    _int(_get(e, "timeUnixNano", "time_unix_nano"), "events.timeUnixNano"),
                    _str(e.get("name"), "events.name"),
                    _json_attrs(e.get("attributes"), 1, limits),
                )
            )
        return _span_events(
            res,
            scope,
            _hex_id(_get(sp, "traceId", "trace_id"), 16, "traceId"),
            _hex_id(_get(sp, "spanId", "span_id"), 8, "spanId"),
            _hex_id(_get(sp, "parentSpanId", "parent_span_id"), 8, "parentSpanId"),
            _str(sp.get("name"), "name"),
            _enum(sp.get("kind"), _KIND_NAMES, "kind"),
            _int(_get(sp, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"),
            _int(_get(sp, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"),
            _enum(status.get("code"), _STATUS_NAMES, "status.code"),
            _str(status.get("message"), "status.message"),
            _json_attrs(sp.get("attributes"), 1, limits),
            sub,
            received_at,
            limits,
        )

    return _collect(groups, "span", make)


# -- answers ----------------------------------------------------------------------------------


def _rejected(done: pipeline.Ingested) -> tuple[int, str]:
    """(records rejected, why): by validation, or by the store (a span and its events are one record)."""
    problems = done.parsed.problems + [(pos, f"record {pos}: store refused it: {why}") for pos, why in done.refused()]
    if not problems:
        return 0, ""
    records = {pos for pos, _ in problems}
    shown = "; ".join(why for _, why in sorted(problems)[:_MAX_PROBLEMS])
    more = f"; and {len(problems) - _MAX_PROBLEMS} more" if len(problems) > _MAX_PROBLEMS else ""
    return len(records), shown + more


def _answer(
    response: Callable[[], ExportLogsServiceResponse | ExportTraceServiceResponse], count_field: str, encoding: str
) -> Callable[[pipeline.Ingested], Response]:
    def answer(done: pipeline.Ingested) -> Response:
        n, why = _rejected(done)
        if encoding == PROTOBUF:
            msg = response()
            if n:
                setattr(msg.partial_success, count_field, n)
                msg.partial_success.error_message = why
            return Response(msg.SerializeToString(), media_type=PROTOBUF)
        camel = "rejectedLogRecords" if count_field == "rejected_log_records" else "rejectedSpans"
        body: dict[str, Any] = {"partialSuccess": {camel: str(n), "errorMessage": why}} if n else {}
        return Response(orjson.dumps(body), media_type=JSON)

    return answer


# google.rpc.Code of each status the pipeline answers (the OTLP spec maps them back the same way).
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 413: 8, 415: 3, 429: 8, 503: 14}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _status(encoding: str) -> Callable[[int, str], tuple[bytes, str]]:
    """A google.rpc.Status {code, message} in the request's encoding (the protobuf one written
    by hand: two fields, no need for googleapis-common-protos)."""

    def status(http: int, message: str) -> tuple[bytes, str]:
        code = _RPC_CODES.get(http, 2)  # 2: UNKNOWN
        if encoding == PROTOBUF:
            text = message.encode()
            return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text, PROTOBUF
        return orjson.dumps({"code": code, "message": message}), JSON

    return status


def _credentials(request: Request) -> tuple[str | None, int | None]:
    """`Authorization: Bearer <token>`; also `Bearer%20<token>`, what an exporter that does not
    URL-decode OTEL_EXPORTER_OTLP_HEADERS (`Authorization=Bearer%20<token>`) sends."""
    token = bearer(request.headers)
    if token is None:
        value = request.headers.get("authorization", "")
        if value[:9].lower() == "bearer%20" and value[9:].strip():
            token = value[9:].strip()
    return token, None


def _edges(
    parse_pb: Callable[[bytes, int, Settings], pipeline.Parsed],
    parse_json: Callable[[bytes, int, Settings], pipeline.Parsed],
    response: Callable[[], ExportLogsServiceResponse | ExportTraceServiceResponse],
    count_field: str,
) -> dict[str, pipeline.Edge]:
    pb = pipeline.Edge(
        protocol="otlp",
        parse=parse_pb,
        answer=_answer(response, count_field, PROTOBUF),
        credentials=_credentials,
        encodings=_ENCODINGS,
        error_body=_status(PROTOBUF),
    )
    js = replace(pb, parse=parse_json, answer=_answer(response, count_field, JSON), error_body=_status(JSON))
    return {PROTOBUF: pb, "application/protobuf": pb, JSON: js}


_LOGS = _edges(parse_pb_logs, parse_json_logs, ExportLogsServiceResponse, "rejected_log_records")
_TRACES = _edges(parse_pb_traces, parse_json_traces, ExportTraceServiceResponse, "rejected_spans")


def _endpoint(edges: dict[str, pipeline.Edge]) -> Callable[[Request], Any]:
    async def export(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        edge = edges.get(media)
        if edge is None:  # before auth: it costs nothing and tells nothing
            message = f"unsupported Content-Type {media or '(none)'!r}; use {PROTOBUF} or {JSON}"
            body, media_type = _status(JSON)(415, message)
            hub_of(request).telemetry.ingest_requests.labels("otlp", "415").inc()
            return Response(body, status_code=415, media_type=media_type, headers={"connection": "close"})
        return await pipeline.run(request, edge)

    return export


_export_logs = _endpoint(_LOGS)
_export_traces = _endpoint(_TRACES)

routes: list[BaseRoute] = [
    Route(f"{prefix}/v1/{signal}", handler, methods=["POST"])
    for prefix in ("", "/otlp")
    for signal, handler in (("logs", _export_logs), ("traces", _export_traces))
]

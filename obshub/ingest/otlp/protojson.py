"""The proto3 JSON front end of OTLP/HTTP (`application/json`), read by hand: trace and span ids
are hex there, and protobuf's own JSON parser would read them as base64 without complaint; int64
values are strings. An `Export*ServiceRequest` -> the plain values mapping.py makes events of."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from obshub.errors import FieldError, ParseError
from obshub.events import Limits, NormalizedEvent
from obshub.ingest import pipeline
from obshub.ingest.otlp.mapping import (
    SPAN_KINDS,
    STATUS_CODES,
    Resource,
    collect,
    counted,
    finite,
    id_prefix,
    log_event,
    resource_of,
    scalar_list,
    span_events,
)
from obshub.settings import Settings

__all__ = ["parse_json_logs", "parse_json_traces"]


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
            return finite(float(d))
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
        return scalar_list(
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
_KIND_NAMES = {f"SPAN_KIND_{k.upper()}": i for i, k in enumerate(SPAN_KINDS)}
_STATUS_NAMES = {f"STATUS_CODE_{s.upper()}": i for i, s in enumerate(STATUS_CODES)}


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
) -> Iterable[tuple[Resource | str, str, list[Any]]]:
    """(resource or why its attributes are refused, scope name, records) per scope of each resource."""
    for i, item in enumerate(items):
        ro = _item(item, f"resource {i + 1}")
        attrs = _obj(ro.get("resource"), "resource").get("attributes")
        try:
            res: Resource | str = resource_of(_json_attrs(attrs, 1, limits))
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
    counted(total, settings, "log records")
    ids = id_prefix(received_at)

    def make(res: Resource, scope: str, raw: Any, n: int) -> list[NormalizedEvent]:
        r = _item(raw, "logRecords")  # not an object: the body is malformed (400), not the record
        return [
            log_event(
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

    return collect(groups, "log record", make)


def _events_of(span: Any) -> list[Any]:
    events = span.get("events") if isinstance(span, dict) else None
    return events if isinstance(events, list) else []


def parse_json_traces(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    items = _json_body(body, "resourceSpans", "ExportTraceServiceRequest")
    limits = settings.limits
    groups = list(_json_groups(items, ("scopeSpans", "scope_spans"), ("spans", "spans"), limits))
    counted(
        sum(1 + len(_events_of(sp)) for _, _, recs in groups for sp in recs),
        settings,
        "spans and span events",
    )

    def make(res: Resource, scope: str, raw: Any, n: int) -> list[NormalizedEvent]:
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
        return span_events(
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

    return collect(groups, "span", make)

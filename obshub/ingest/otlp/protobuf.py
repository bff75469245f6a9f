"""The protobuf front end of OTLP/HTTP (`application/x-protobuf`): an `Export*ServiceRequest`
-> the plain values mapping.py makes events of.

upb parses the body twice: as opentelemetry-proto's request, only to refuse a malformed body
(400) exactly as protobuf would, then as lite.py's, whose records hand over their attributes as
bytes for wire.py to read (docs/otlp.md, "Throughput").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from obshub.errors import FieldError, ParseError
from obshub.events import Limits, NormalizedEvent
from obshub.ingest import pipeline
from obshub.ingest.otlp.lite import LogsRequest, TracesRequest
from obshub.ingest.otlp.mapping import Group, Resource, collect, counted, id_prefix, log_event, resource_of, span_events
from obshub.ingest.otlp.wire import any_value, attrs_check, id_hex, key_value, simple_key_value
from obshub.settings import Settings

__all__ = ["parse_pb_logs", "parse_pb_traces"]

# Attributes repeat from record to record (a logger's code.*, thread.*, http.*; bench/otlp.py's
# data: 2 of 5 always, 2 often): each simple one read is kept by its bytes for the request, up to
# this many, and a repeat costs a dict lookup (~0.1 µs) instead of a read (~0.4 µs).
_SEEN_MAX = 4096
Seen = dict[bytes, tuple[str, str | int]]
_NO_TRACE, _NO_SPAN = bytes(16), bytes(8)  # all zero: no id


def _parsed(body: bytes, message: type[Message], lite: type[Message]) -> Any:
    """upb's verdict on the body (malformed: ParseError, a 400), then the body as `lite`."""
    try:
        message().ParseFromString(body)
    except DecodeError as e:
        raise ParseError(f"body is not an OTLP {message.__name__} (protobuf): {e}") from None
    req = lite()
    req.ParseFromString(body)
    return req


def _groups(resources: Sequence[Any], scopes: str, records: str, limits: Limits) -> Iterator[Group]:
    """The protobuf twin of protojson's `_json_groups`: (resource, scope name, records) per scope."""
    for ro in resources:
        try:
            res: Resource | str = resource_of(_attributes(ro.resource.attributes, limits, {}))
        except FieldError as e:  # over a limit: every record of the resource is refused
            res = f"resource: {e}"
        for so in getattr(ro, scopes):
            yield res, so.scope.name, getattr(so, records)


def _attributes(kvs: Sequence[bytes], limits: Limits, seen: Seen) -> dict[str, Any]:
    """A record's attributes (each KeyValue's bytes) -> a dict (the last of a key wins)."""
    attrs_check(1, limits)
    attrs: dict[str, Any] = {}
    known = seen.get
    for raw in kvs:
        kv = known(raw)
        if kv is None:
            kv = simple_key_value(raw, 0, len(raw))
            if kv is None:
                key, value = key_value(raw, 0, len(raw), 1, limits)
                attrs[key] = value
                continue
            if len(seen) < _SEEN_MAX:
                seen[raw] = kv
        attrs[kv[0]] = kv[1]
    return attrs


def _body(v: Any, limits: Limits) -> Any:
    """A lite.py AnyValue -> its value; none set (or no body): None."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which is None:
        return None
    raw = v.SerializeToString()
    return any_value(raw, 0, len(raw), 1, limits)


def parse_pb_logs(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    req = _parsed(body, ExportLogsServiceRequest, LogsRequest)
    limits = settings.limits
    counted(sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs), settings, "log records")
    ids = id_prefix(received_at)
    seen: Seen = {}
    known = seen.get
    too_deep = limits.max_attr_depth < 1  # (then even a record's own attributes are refused)

    def make(res: Resource, scope: str, r: Any, n: int) -> list[NormalizedEvent]:
        # Checked in the JSON front end's order (body, attributes, ids), so a record with two
        # problems is refused for the same one. `_attributes` and `id_hex` inlined: this runs
        # per record, and a call costs what reading an attribute does.
        value = _body(r.body, limits)
        if too_deep:
            attrs_check(1, limits)
        attrs: dict[str, Any] = {}
        for raw in r.attributes:
            kv = known(raw)
            if kv is None:
                kv = simple_key_value(raw, 0, len(raw))
                if kv is None:
                    key, v = key_value(raw, 0, len(raw), 1, limits)
                    attrs[key] = v
                    continue
                if len(seen) < _SEEN_MAX:
                    seen[raw] = kv
            attrs[kv[0]] = kv[1]
        trace_id = r.trace_id
        trace = trace_id.hex() if len(trace_id) == 16 and trace_id != _NO_TRACE else id_hex(trace_id, 16, "traceId")
        span_id = r.span_id
        span = span_id.hex() if len(span_id) == 8 and span_id != _NO_SPAN else id_hex(span_id, 8, "spanId")
        return [
            log_event(
                res,
                scope,
                r.time_unix_nano,
                r.observed_time_unix_nano,
                r.severity_number,
                r.severity_text,
                value,
                attrs,
                trace,
                span,
                r.event_name,
                f"{ids}{n:06x}",
                received_at,
                limits,
            )
        ]

    return collect(_groups(req.resource_logs, "scope_logs", "log_records", limits), "log record", make)


def parse_pb_traces(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    req = _parsed(body, ExportTraceServiceRequest, TracesRequest)
    limits = settings.limits
    counted(
        sum(len(s.spans) + sum(len(sp.events) for sp in s.spans) for rs in req.resource_spans for s in rs.scope_spans),
        settings,
        "spans and span events",
    )
    seen: Seen = {}

    def make(res: Resource, scope: str, sp: Any, n: int) -> list[NormalizedEvent]:
        return span_events(
            res,
            scope,
            id_hex(sp.trace_id, 16, "traceId"),
            id_hex(sp.span_id, 8, "spanId"),
            id_hex(sp.parent_span_id, 8, "parentSpanId"),
            sp.name,
            sp.kind,
            sp.start_time_unix_nano,
            sp.end_time_unix_nano,
            sp.status.code,
            sp.status.message,
            _attributes(sp.attributes, limits, seen),
            [(e.time_unix_nano, e.name, _attributes(e.attributes, limits, seen)) for e in sp.events],
            received_at,
            limits,
        )

    return collect(_groups(req.resource_spans, "scope_spans", "spans", limits), "span", make)

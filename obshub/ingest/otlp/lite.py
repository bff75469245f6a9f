"""The OTLP request messages as the protobuf front end reads them: opentelemetry-proto's layouts
(logs.proto, trace.proto, common.proto: the same field numbers and wire types), except that
each KeyValue, and an AnyValue's array or kvlist members, are declared `bytes`: upb hands over
their bytes (read by wire.py, a repeated attribute looked up by them) instead of building two
Python wrappers per attribute read back (~0.5 µs each through opentelemetry-proto's classes).

Everything else is upb's as before: a message field sent twice is merged, a field of another
wire type than declared is unknown, unknown fields are skipped. Dropped-counts, flags, links,
trace state, schema URLs and scope versions are not declared: obshub stores none of them.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

__all__ = ["LogsRequest", "TracesRequest"]

_F = descriptor_pb2.FieldDescriptorProto
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_PACKAGE = "obshub.otlp.read"

# message -> (field name, number, type, label, message type name)
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    "LogsRequest": [("resource_logs", 1, _F.TYPE_MESSAGE, _MANY, "ResourceLogs")],
    "ResourceLogs": [
        ("resource", 1, _F.TYPE_MESSAGE, _ONE, "Resource"),
        ("scope_logs", 2, _F.TYPE_MESSAGE, _MANY, "ScopeLogs"),
    ],
    "ScopeLogs": [
        ("scope", 1, _F.TYPE_MESSAGE, _ONE, "InstrumentationScope"),
        ("log_records", 2, _F.TYPE_MESSAGE, _MANY, "LogRecord"),
    ],
    "Resource": [("attributes", 1, _F.TYPE_BYTES, _MANY, "")],  # KeyValue
    "InstrumentationScope": [("name", 1, _F.TYPE_STRING, _ONE, "")],
    "LogRecord": [
        ("time_unix_nano", 1, _F.TYPE_FIXED64, _ONE, ""),
        ("severity_number", 2, _F.TYPE_INT32, _ONE, ""),  # an open enum: its int32 as sent
        ("severity_text", 3, _F.TYPE_STRING, _ONE, ""),
        ("body", 5, _F.TYPE_MESSAGE, _ONE, "AnyValue"),
        ("attributes", 6, _F.TYPE_BYTES, _MANY, ""),  # KeyValue
        ("trace_id", 9, _F.TYPE_BYTES, _ONE, ""),
        ("span_id", 10, _F.TYPE_BYTES, _ONE, ""),
        ("observed_time_unix_nano", 11, _F.TYPE_FIXED64, _ONE, ""),
        ("event_name", 12, _F.TYPE_STRING, _ONE, ""),
    ],
    # common.proto's AnyValue, its members one oneof: a string body read without wire.py; the
    # others serialized back to bytes for wire.py (their merge, if sent twice, done by upb).
    "AnyValue": [
        ("string_value", 1, _F.TYPE_STRING, _ONE, ""),
        ("bool_value", 2, _F.TYPE_BOOL, _ONE, ""),
        ("int_value", 3, _F.TYPE_INT64, _ONE, ""),
        ("double_value", 4, _F.TYPE_DOUBLE, _ONE, ""),
        ("array_value", 5, _F.TYPE_MESSAGE, _ONE, "Values"),
        ("kvlist_value", 6, _F.TYPE_MESSAGE, _ONE, "Values"),
        ("bytes_value", 7, _F.TYPE_BYTES, _ONE, ""),
        ("string_value_strindex", 8, _F.TYPE_INT32, _ONE, ""),
    ],
    "Values": [("values", 1, _F.TYPE_BYTES, _MANY, "")],  # ArrayValue's or KeyValueList's
    "TracesRequest": [("resource_spans", 1, _F.TYPE_MESSAGE, _MANY, "ResourceSpans")],
    "ResourceSpans": [
        ("resource", 1, _F.TYPE_MESSAGE, _ONE, "Resource"),
        ("scope_spans", 2, _F.TYPE_MESSAGE, _MANY, "ScopeSpans"),
    ],
    "ScopeSpans": [
        ("scope", 1, _F.TYPE_MESSAGE, _ONE, "InstrumentationScope"),
        ("spans", 2, _F.TYPE_MESSAGE, _MANY, "Span"),
    ],
    "Span": [
        ("trace_id", 1, _F.TYPE_BYTES, _ONE, ""),
        ("span_id", 2, _F.TYPE_BYTES, _ONE, ""),
        ("parent_span_id", 4, _F.TYPE_BYTES, _ONE, ""),
        ("name", 5, _F.TYPE_STRING, _ONE, ""),
        ("kind", 6, _F.TYPE_INT32, _ONE, ""),
        ("start_time_unix_nano", 7, _F.TYPE_FIXED64, _ONE, ""),
        ("end_time_unix_nano", 8, _F.TYPE_FIXED64, _ONE, ""),
        ("attributes", 9, _F.TYPE_BYTES, _MANY, ""),
        ("events", 11, _F.TYPE_MESSAGE, _MANY, "Event"),
        ("status", 15, _F.TYPE_MESSAGE, _ONE, "Status"),
    ],
    "Status": [("message", 2, _F.TYPE_STRING, _ONE, ""), ("code", 3, _F.TYPE_INT32, _ONE, "")],
    "Event": [
        ("time_unix_nano", 1, _F.TYPE_FIXED64, _ONE, ""),
        ("name", 2, _F.TYPE_STRING, _ONE, ""),
        ("attributes", 3, _F.TYPE_BYTES, _MANY, ""),
    ],
}


def _classes() -> dict[str, type[Message]]:
    """The message classes, from a descriptor built here (a pool of their own: no clash with
    opentelemetry-proto's names)."""
    file = descriptor_pb2.FileDescriptorProto(name="obshub_otlp_read.proto", package=_PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        if name == "AnyValue":
            message.oneof_decl.add(name="value")
        for field, number, kind, label, type_name in fields:
            f = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".{_PACKAGE}.{type_name}"
            if name == "AnyValue":
                f.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name in _MESSAGES}


_CLASSES = _classes()
LogsRequest = _CLASSES["LogsRequest"]
TracesRequest = _CLASSES["TracesRequest"]

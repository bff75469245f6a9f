"""The OTLP protobuf reader (obshub/ingest/otlp/protobuf.py, lite.py, wire.py) against the proto3
JSON one, which shares no code with it: the same request, built with opentelemetry-proto's
classes, as protobuf and as JSON (`json_format.MessageToDict`, ids as hex as OTLP's JSON has
them) gives the same events and the same refusals. The protobuf side is also sent as protobuf
writers may shape it (fields out of order, a message field twice, unknown fields, long
varints) and as random corruptions of a valid body: upb's reading of the bytes is the reference.
"""

from __future__ import annotations

import base64
import itertools
import math
import random
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from obshub.errors import BodyError, ParseError
from obshub.events import now_us
from obshub.ingest.otlp import parse_json_logs, parse_json_traces, parse_pb_logs, parse_pb_traces
from obshub.ingest.pipeline import Parsed
from obshub.settings import Settings
from tests.hubproc import LiveHub

NOW_NS = now_us() * 1000
SETTINGS = Settings()


def av(v: Any) -> AnyValue:
    """An AnyValue of a Python value (dict: kvlist, list: array, bytes: bytes)."""
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=kvs(v)))
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[av(x) for x in v]))
    return AnyValue()  # None: an AnyValue holding nothing


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=av(v)) for k, v in attrs.items()]


def nested(depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {"leaf": 1}
    for i in range(depth):
        out = {f"l{i}": out}
    return out


def rich_logs(tag: str = "") -> ExportLogsServiceRequest:
    """Every kind of value, body, severity, time and id the mapping knows, over three resources."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(
        kvs(
            {
                "service.name": f"api{tag}",
                "host.name": "web-1",
                "deployment.environment.name": "prod",
                "service.version": "1.2.3",
                "k8s.pod.name": "api-7f9",
                "process.pid": 4242,
            }
        )
    )
    sl = rl.scope_logs.add()
    sl.scope.name = "api.handlers"
    long_text = "é" * 300  # multi-byte UTF-8 and a two-byte length
    records = [
        LogRecord(time_unix_nano=NOW_NS - 9_000_000, severity_number=9, body=av("plain text")),
        LogRecord(
            time_unix_nano=NOW_NS - 8_000_000,
            severity_number=17,
            severity_text="ERROR",
            body=av({"message": "structured", "order": 991, "ok": False}),
            trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60c"),
            span_id=bytes.fromhex("eee19b7ec3c1b174"),
            attributes=kvs(
                {
                    "enduser.id": "u-1",
                    "session.id": 77,
                    "retries": -3,
                    "big": -(2**63),
                    "max": 2**63 - 1,
                    "ratio": 0.25,
                    "neg": -1.5e300,
                    "flag": True,
                    "nothing": None,
                    "raw": b"\x00\xffbytes",
                    "tags": ["a", 2, True, 1.5, {"x": 1}, ["y"]],
                    "http": {"method": "POST", "route": {"name": "/orders"}},
                    "text": long_text,
                    "ключ": "значение",
                    "empty": "",
                }
            ),
        ),
        LogRecord(observed_time_unix_nano=NOW_NS - 7_000_000, severity_text="warn", body=av({"msg": "alt key"})),
        LogRecord(time_unix_nano=500, observed_time_unix_nano=NOW_NS - 6_000_000, body=av(42)),  # < 1 µs: observed
        LogRecord(severity_number=-5, body=av(["a", 1])),  # no time at all: the receive time
        LogRecord(severity_number=99, severity_text="debug", body=av(True)),
        LogRecord(body=av(2.5), event_name="checkout.done", attributes=kvs({"user.id": 5})),
        LogRecord(body=av(b"blob")),
        LogRecord(body=AnyValue()),  # a body holding nothing
        LogRecord(
            body=av("failed"),
            attributes=kvs(
                {
                    "exception.type": "ValueError",
                    "exception.message": "bad order",
                    "exception.stacktrace": (
                        'Traceback (most recent call last):\n  File "a.py", line 1, in f\nValueError: bad order'
                    ),
                    "exception.escaped": True,
                }
            ),
        ),
        LogRecord(body=av("zero ids"), trace_id=bytes(16), span_id=bytes(8)),
        # Refused one by one (the partial success): too deep, then too deep inside an array.
        LogRecord(body=av("deep"), attributes=kvs({"d": nested(9)})),
        LogRecord(body=av("deep array"), attributes=kvs({"a": [[[[[[[[[["x"]]]]]]]]]]})),
        LogRecord(body=av({"deep": nested(9)})),  # the body is checked first
        LogRecord(time_unix_nano=9_000_000_000_000_000_000, body=av("past 2200")),
        LogRecord(body=av("x" * 300_000)),  # over max_message_bytes
    ]
    sl.log_records.extend(records)
    sl2 = rl.scope_logs.add()  # a second scope without a name
    sl2.log_records.add(body=av("unscoped"), severity_number=13, attributes=kvs({"process.pid": 1}))
    rl2 = req.resource_logs.add()  # over a limit: every record of the resource is refused
    rl2.resource.attributes.extend(kvs({"service.name": f"deep{tag}", "d": nested(9)}))
    rl2.scope_logs.add().log_records.add(body=av("refused with its resource"))
    rl3 = req.resource_logs.add()  # service.name not a string; no scopes' names
    rl3.resource.attributes.extend(kvs({"service.name": 7, "deployment.environment": "dev"}))
    rl3.scope_logs.add().log_records.add(body=av(f"numeric service{tag}"), time_unix_nano=NOW_NS)
    return req


def rich_traces() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs({"service.name": "orders", "host.name": "web-2"}))
    ss = rs.scope_spans.add()
    ss.scope.name = "flask"
    trace = bytes.fromhex("ab" * 16)
    ss.spans.extend(
        [
            Span(
                trace_id=trace,
                span_id=bytes.fromhex("0000000000000001"),
                name="POST /orders",
                kind=2,
                start_time_unix_nano=NOW_NS - 10_000_000,
                end_time_unix_nano=NOW_NS - 9_750_000,
                attributes=kvs(
                    {"http.method": "POST", "http.target": "/orders", "http.status_code": 500, "enduser.id": "u-1"}
                ),
                status=Status(code=2, message="boom"),
                events=[
                    Span.Event(
                        time_unix_nano=NOW_NS - 9_900_000,
                        name="exception",
                        attributes=kvs({"exception.type": "ValueError", "exception.message": "bad"}),
                    ),
                    Span.Event(name="cache miss", attributes=kvs({"key": "o:1"})),
                ],
            ),
            Span(
                trace_id=trace,
                span_id=bytes.fromhex("0000000000000002"),
                parent_span_id=bytes.fromhex("0000000000000001"),
                name="db",
                kind=3,
                start_time_unix_nano=NOW_NS - 9_990_000,
                end_time_unix_nano=NOW_NS - 9_985_000,
                status=Status(code=1),
            ),
            Span(trace_id=trace, span_id=bytes.fromhex("0000000000000003"), name="odd kind", kind=42),
            Span(name="no ids", kind=-1, attributes=kvs({"deep": nested(9)})),  # refused: too deep
        ]
    )
    return req


def _hex_ids(doc: Any) -> Any:
    """proto3 JSON as OTLP has it: trace and span ids hex (MessageToDict writes bytes as base64)."""
    if isinstance(doc, dict):
        return {
            k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else _hex_ids(v)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [_hex_ids(x) for x in doc]
    return doc


def as_json(req: ExportLogsServiceRequest | ExportTraceServiceRequest) -> bytes:
    # (empty fields too: MessageToDict would leave out an attribute's empty key, which the JSON
    # reader refuses as malformed, where protobuf has "" as the key)
    return orjson.dumps(_hex_ids(json_format.MessageToDict(req, always_print_fields_with_no_presence=True)))


def comparable(p: Parsed) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]], dict[str, Any]]:
    """A parse's events (a log record's id: its number in the request, past the random part),
    their positions, the problems, the record count."""
    events = []
    for pos, ev in zip(p.positions, p.events, strict=True):
        e = dict(ev)
        if e["id"].startswith(f"{e['received_at']:014x}"):
            e["id"] = e["id"][-6:]
        events.append((pos, e))
    return events, p.problems, p.header


LOGS = (parse_pb_logs, parse_json_logs, ExportLogsServiceRequest)
TRACES = (parse_pb_traces, parse_json_traces, ExportTraceServiceRequest)


def both(
    kind: tuple[Callable[..., Parsed], Callable[..., Parsed], Any], pb: bytes, settings: Settings = SETTINGS
) -> None:
    """The protobuf reader's result for `pb` equals the JSON reader's for upb's reading of it."""
    parse_pb, parse_json, message = kind
    received_at = now_us()
    got = comparable(parse_pb(pb, received_at, settings))
    want = comparable(parse_json(as_json(message.FromString(pb)), received_at, settings))
    assert got == want


def test_protobuf_and_json_give_the_same_log_events() -> None:
    pb = rich_logs().SerializeToString()
    both(LOGS, pb)
    events, problems, header = comparable(parse_pb_logs(pb, now_us(), SETTINGS))
    assert header == {"records": 19} and len(events) == 13
    assert [pos for pos, _ in problems] == [12, 13, 14, 15, 16, 18]  # the checks above did run
    (structured,) = [e for _, e in events if e["message"] == "structured"]
    assert structured["attrs"]["big"] == -(2**63) and structured["attrs"]["text"] == "é" * 300
    assert structured["attrs"]["raw"] == base64.b64encode(b"\x00\xffbytes").decode()
    assert structured["user_id"] == "u-1" and structured["session_id"] == "77"


def test_protobuf_and_json_give_the_same_spans() -> None:
    both(TRACES, rich_traces().SerializeToString())


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_attribute_depth_limits_alike(depth: int) -> None:
    """OBSHUB_MAX_ATTR_DEPTH set low: 0 refuses even a record's (and a resource's) own list."""
    settings = Settings(max_attr_depth=depth)
    both(LOGS, rich_logs().SerializeToString(), settings)
    both(TRACES, rich_traces().SerializeToString(), settings)


def test_non_finite_doubles_are_text() -> None:
    """(The one place the encodings differ: JSON names them "NaN", "Infinity"; protobuf's are
    Python's text of the float.)"""
    req = ExportLogsServiceRequest()
    req.resource_logs.add().scope_logs.add().log_records.add(
        body=av("nan"), attributes=kvs({"a": math.nan, "b": math.inf, "c": -math.inf})
    )
    (ev,) = parse_pb_logs(req.SerializeToString(), now_us(), SETTINGS).events
    assert ev["attrs"] == {"a": "nan", "b": "inf", "c": "-inf"}


def _field(number: int, wire: int, payload: bytes | int) -> bytes:
    """One field on the wire: varint (0), fixed64 (1, 8 bytes), bytes (2), fixed32 (5)."""
    out = _varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(payload, int)
        return out + _varint(payload)
    assert isinstance(payload, bytes)
    return out + (_varint(len(payload)) + payload if wire == 2 else payload)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _logs(*records: bytes, resource: bytes = b"") -> bytes:
    """An ExportLogsServiceRequest of records given as bytes (written here: any shape)."""
    scope = _field(1, 2, _field(1, 2, b"scope")) + b"".join(_field(2, 2, r) for r in records)
    rl = (_field(1, 2, resource) if resource else b"") + _field(2, 2, scope)
    return _field(1, 2, rl)


def _rec(**fields: Any) -> bytes:
    return LogRecord(**fields).SerializeToString()


def _kv(key: str, value: AnyValue) -> bytes:
    return KeyValue(key=key, value=value).SerializeToString()


UNKNOWN = _field(99, 0, 7) + _field(100, 2, b"\x01\x02") + _field(101, 5, b"abcd") + _field(102, 1, b"12345678")
GROUP = _varint(103 << 3 | 3) + _field(1, 0, 5) + _varint(103 << 3 | 4)  # a (proto2) group


def _numbered(prefix: str) -> Callable[[object], str]:
    """Test ids prefix0, prefix1, ... in parameter order."""
    count = itertools.count()
    return lambda _value: f"{prefix}{next(count)}"


@pytest.mark.parametrize(
    "body",
    [
        # Fields in any order: ids and attributes before the time.
        _logs(
            _field(9, 2, bytes.fromhex("ab" * 16))
            + _field(6, 2, _kv("k", av("v")))
            + _field(1, 1, (NOW_NS).to_bytes(8, "little"))
            + _field(5, 2, av("out of order").SerializeToString())
        ),
        # A singular field twice: the last wins; a message field twice: the two merged (the
        # body's kvlist gets both lists' values, the second string body replaces the first).
        _logs(_rec(body=av({"a": 1}), severity_number=9) + _rec(body=av({"b": 2}), severity_number=13)),
        _logs(_rec(body=av("first")) + _rec(body=av("second"))),
        _logs(_rec(body=av("string then list")) + _rec(body=av([1, 2]))),
        _logs(_rec(body=av([1])) + _rec(body=av([2, 3]))),
        _logs(_rec(body=av("v"), attributes=kvs({"k": 1})) + _rec(attributes=kvs({"k": 2, "j": 3}))),
        # A KeyValue's value twice (merged: a kvlist then another), its key twice (the last).
        _logs(
            _field(
                6,
                2,
                _kv("m", av({"x": 1})) + _field(2, 2, av({"y": 2}).SerializeToString()) + _field(1, 2, b"renamed"),
            )
        ),
        # Unknown fields everywhere, a group among them, and known fields of another wire type.
        _logs(
            _rec(body=av("unknowns"), attributes=kvs({"k": "v"}))
            + UNKNOWN
            + GROUP
            + _field(6, 2, _kv("u", av("w")) + UNKNOWN)
            + _field(6, 2, _field(1, 2, b"in value") + _field(2, 2, av("x").SerializeToString() + UNKNOWN)),
            resource=_field(1, 2, _kv("service.name", av("svc"))) + UNKNOWN,
        ),
        _logs(_rec(body=av("wrong wire types")) + _field(6, 0, 5) + _field(5, 5, b"abcd") + _field(2, 2, b"\x09")),
        _logs(
            _field(6, 2, _kv("s", AnyValue()) + b"") + _field(6, 2, _field(1, 2, b"k") + _field(2, 2, _field(1, 0, 3)))
        ),
        # Varints longer than they need be, a negative severity (10 bytes), huge times.
        _logs(
            b"\x10\xfb\xff\xff\xff\xff\xff\xff\xff\xff\x01"
            + b"\x2a\x83\x00\x0a\x01x"
            + _field(1, 1, (2**64 - 1).to_bytes(8, "little"))
        ),
        _logs(_rec(time_unix_nano=NOW_NS, body=av("k" * 20_000), attributes=kvs({"v" * 200: "w" * 20_000}))),
        # A scope sent twice (its name: the last), a resource twice (its attributes: both).
        _field(
            1,
            2,
            _field(1, 2, _field(1, 2, _kv("service.name", av("one"))))
            + _field(1, 2, _field(1, 2, _kv("host.name", av("h"))))
            + _field(
                2,
                2,
                _field(1, 2, _field(1, 2, b"a"))
                + _field(1, 2, _field(1, 2, b"b"))
                + _field(2, 2, _rec(body=av("two scopes"))),
            ),
        ),
        b"",  # no resources at all
    ],
    ids=_numbered("shape"),  # not the bytes: they hold the time, and each xdist worker must collect the same ids
)
def test_wire_shapes_read_as_upb_reads_them(body: bytes) -> None:
    both(LOGS, body)


def test_span_wire_shapes() -> None:
    span = Span(trace_id=bytes(range(16)), span_id=bytes(range(8)), name="s", start_time_unix_nano=NOW_NS)
    raw = (
        span.SerializeToString()
        + _field(15, 2, Status(code=2).SerializeToString())
        + _field(15, 2, Status(message="merged").SerializeToString())  # the two merged: error, "merged"
        + _field(16, 5, b"\x01\x00\x00\x00")  # flags (a two-byte tag)
        + _field(11, 2, Span.Event(name="e", attributes=kvs({"a": 1})).SerializeToString() + UNKNOWN)
        + _field(6, 0, 2**64 - 2)  # kind: -2 as a 10-byte varint
    )
    body = _field(1, 2, _field(2, 2, _field(2, 2, raw)))
    both(TRACES, body)
    assert "span.status_message" in parse_pb_traces(body, now_us(), SETTINGS).events[0]["attrs"]


@pytest.mark.parametrize("seed", range(4))
def test_corrupted_bodies_are_refused_or_read_as_upb_reads_them(seed: int) -> None:
    """Random bytes flipped, cut or repeated in a valid body: a 400 when upb refuses it (never
    another error: an IndexError would be a 500), else the same as the JSON of upb's reading."""
    rng = random.Random(seed)
    req = rich_logs()
    # Not the all-zero ids (cut short, protobuf reads them as no id, JSON as ids too short), nor
    # the 300 kB message (nearly every corruption would land in it).
    records = req.resource_logs[0].scope_logs[0].log_records
    del records[15], records[10]
    base = bytearray(req.SerializeToString())
    refused = read = 0
    for _ in range(300):
        body = bytearray(base)
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(body))
            action = rng.random()
            if action < 0.6:
                body[at] = rng.randrange(256)
            elif action < 0.8:
                del body[at : at + rng.randint(1, 8)]
            else:
                body[at:at] = body[at : at + rng.randint(1, 8)]
        try:
            ExportLogsServiceRequest.FromString(bytes(body))
        except DecodeError:
            with pytest.raises(ParseError, match="not an OTLP ExportLogsServiceRequest"):
                parse_pb_logs(bytes(body), now_us(), SETTINGS)
            refused += 1
            continue
        received_at = now_us()
        try:
            got = comparable(parse_pb_logs(bytes(body), received_at, SETTINGS))
        except BodyError:  # e.g. a record count grown past the limit
            continue
        want = comparable(
            parse_json_logs(as_json(ExportLogsServiceRequest.FromString(bytes(body))), received_at, SETTINGS)
        )
        # (ids of a corrupted length are refused by both, with each encoding's wording; NaN too)
        assert [(p, e) for p, e in got[0] if not _non_finite(e)] == [(p, e) for p, e in want[0] if not _non_finite(e)]
        assert [p for p, _ in got[1]] == [p for p, _ in want[1]]
        read += 1
    assert refused > 100 and read > 10  # (most corruptions break the UTF-8 or the layout)


def _non_finite(ev: dict[str, Any]) -> bool:
    return re.search(rb'"(-?inf|nan|NaN|-?Infinity)"', orjson.dumps(ev)) is not None


def test_the_stored_events_are_the_same_by_protobuf_and_by_json(hub: LiveHub) -> None:
    """Through a live hub, on both stores: the same request as protobuf and as JSON (services
    named apart) stores the same events and answers the same partial success."""
    partial = []
    for body, ctype in (
        (rich_logs("-pb").SerializeToString(), "application/x-protobuf"),
        (as_json(rich_logs("-json")), "application/json"),
    ):
        with hub.client(hub.ingest_token) as c:
            r = c.post("/v1/logs", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text
        if ctype == "application/json":
            partial.append(
                (int(r.json()["partialSuccess"]["rejectedLogRecords"]), r.json()["partialSuccess"]["errorMessage"])
            )
        else:
            p = ExportLogsServiceResponse.FromString(r.content).partial_success
            partial.append((p.rejected_log_records, p.error_message))
    assert partial[0] == partial[1] and partial[0][0] == 6, partial
    stored = {}
    for tag in ("-pb", "-json"):
        events = hub.search_all(f"service:api{tag}", **{"from": "-1d"})
        events += hub.search_all(f'"numeric service{tag}"', **{"from": "-1d"})
        stored[tag] = sorted((_as_stored(e, tag) for e in events), key=orjson.dumps)
    assert len(stored["-pb"]) == 13 and stored["-pb"] == stored["-json"]


def _as_stored(ev: dict[str, Any], tag: str) -> dict[str, Any]:
    """An event without what differs between the two requests: the id (random), the receive
    time (and the time of a record without one), the service's tag."""
    out = {k: v for k, v in ev.items() if k not in ("id", "received_at")}
    if ev["ts"] == ev["received_at"]:  # (search answers leave out the fields without a value)
        del out["ts"]
    out["service"] = ev["service"].replace(tag, "")
    if "message" in out:
        out["message"] = out["message"].replace(tag, "")
    return out

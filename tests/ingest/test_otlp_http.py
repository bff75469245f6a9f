"""OTLP/HTTP on the wire (docs/otlp.md): hand-built proto3 JSON and protobuf bodies against a live
hub, on both stores. Hex ids (not base64), int64 as strings, all-zero ids as none, gzip, deflate
and zstd bodies, partial success for records that fail validation, and every error as a
google.rpc.Status in the request's encoding with the status the OTLP spec gives it.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import httpx
import orjson
import pytest
import zstandard
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from obshub.events import now_us
from tests.hubproc import LiveHub, metric

PB = "application/x-protobuf"
TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"


def post(
    hub: LiveHub, path: str, body: bytes, ctype: str = "application/json", token: str | None = None, **headers: str
) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token or hub.ingest_token}"} if token != "" else {}
    return httpx.post(f"{hub.url}{path}", content=body, headers={"Content-Type": ctype, **auth, **headers}, timeout=30)


def kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def json_logs(*records: dict[str, Any], resource: list[dict[str, Any]] | None = None) -> bytes:
    res = resource if resource is not None else [kv("service.name", {"stringValue": "api"})]
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": res},
                    "scopeLogs": [{"scope": {"name": "api.handlers"}, "logRecords": list(records)}],
                }
            ]
        }
    )


def ns(offset_s: float = 0) -> str:
    return str((now_us() + int(offset_s * 1e6)) * 1000)


def pb_logs(n: int, message: str = "hello") -> ExportLogsServiceRequest:
    t = int(ns())
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="pb"))]),
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(
                                time_unix_nano=t + i,
                                severity_number=9,
                                body=AnyValue(string_value=f"{message} {i}"),
                                trace_id=bytes.fromhex(TRACE),
                                span_id=bytes.fromhex(SPAN),
                                attributes=[KeyValue(key="i", value=AnyValue(int_value=i))],
                            )
                            for i in range(n)
                        ]
                    )
                ],
            )
        ]
    )


def found(hub: LiveHub, q: str) -> list[dict[str, Any]]:
    return hub.search_all(q, **{"from": "-1d"})


def test_proto3_json_logs_hex_ids_int64_strings_and_zero_ids(hub: LiveHub) -> None:
    body = json_logs(
        {
            "timeUnixNano": ns(-60),
            "severityNumber": 17,
            "severityText": "ERROR",
            "body": {"stringValue": "payment failed"},
            "traceId": TRACE.upper(),  # hex, any case: stored lowercase
            "spanId": SPAN,
            "attributes": [
                kv("retries", {"intValue": "3"}),  # int64 as a string (proto3 JSON)
                kv("ratio", {"doubleValue": 0.5}),
                kv("ok", {"boolValue": False}),
                kv("tags", {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}),
                kv("http", {"kvlistValue": {"values": [kv("method", {"stringValue": "POST"})]}}),
                kv("user.id", {"stringValue": "u-7"}),
            ],
        },
        {
            "observedTimeUnixNano": ns(-30),  # no timeUnixNano: the observed time
            "severityNumber": "SEVERITY_NUMBER_WARN",  # an enum may be its name
            "body": {
                "kvlistValue": {
                    "values": [
                        kv("message", {"stringValue": "slow"}),
                        kv("ms", {"intValue": 900}),
                        kv("was", {"stringValue": "slow"}),  # the same text under another key stays
                    ]
                }
            },
            "traceId": "0" * 32,  # all zero: no trace
            "spanId": "0" * 16,
        },
        {"timeUnixNano": 0, "severityText": "debug", "body": {"stringValue": "now"}, "traceId": "", "spanId": ""},
    )
    r = post(hub, "/v1/logs", body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    assert r.json() == {}  # an empty ExportLogsServiceResponse: no partial success
    (failed,) = found(hub, "payment")
    assert (failed["trace_id"], failed["span_id"], failed["user_id"]) == (TRACE, SPAN, "u-7")
    assert failed["level"] == "error" and failed["service"] == "api" and failed["logger"] == "api.handlers"
    assert failed["attrs"] == {"retries": 3, "ratio": 0.5, "ok": False, "tags": ["a", 2], "http.method": "POST"}
    assert failed["ts"] < found(hub, "slow")[0]["ts"]
    (slow,) = found(hub, "slow")
    assert slow["level"] == "warning" and "trace_id" not in slow and "span_id" not in slow
    assert slow["attrs"] == {"body.ms": 900, "body.was": "slow"}
    (now,) = found(hub, "now")
    assert now["level"] == "debug"


def test_partial_success_names_the_invalid_records_and_keeps_the_others(hub: LiveHub) -> None:
    body = json_logs(
        {"body": {"stringValue": "good one"}},
        {"body": {"stringValue": "bad id"}, "traceId": "AAECAwQFBgcICQoLDA0ODw=="},  # base64: refused, not misread
        {"body": {"stringValue": "bad time"}, "timeUnixNano": "9000000000000000000"},  # 2255: past 2200
        {"body": {"stringValue": "second good"}},
    )
    r = post(hub, "/otlp/v1/logs", body)
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "2"
    assert "log record 2: traceId: expected 32 hex digits" in partial["errorMessage"]
    assert "log record 3: ts: epoch 9000000000000000 is outside 1970..2200" in partial["errorMessage"]
    assert sorted(e["message"] for e in found(hub, "")) == ["good one", "second good"]
    # The same in protobuf: a span id of 4 bytes is refused, the other record kept.
    req = pb_logs(2, "pb")
    req.resource_logs[0].scope_logs[0].log_records[1].span_id = b"\x01\x02\x03\x04"
    r = post(hub, "/v1/logs", req.SerializeToString(), PB)
    assert r.status_code == 200 and r.headers["content-type"] == PB
    resp = ExportLogsServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_log_records == 1
    assert "spanId: expected 8 bytes, got 4" in resp.partial_success.error_message
    assert [e["message"] for e in found(hub, "pb")] == ["pb 0"]
    # Counted like the other protocols' events (docs/monitoring.md), under protocol="otlp".
    assert metric(hub, "obshub_ingest_events_total", protocol="otlp", outcome="accepted") == 3
    assert metric(hub, "obshub_ingest_events_total", protocol="otlp", outcome="rejected") == 3
    assert metric(hub, "obshub_ingest_rejected_total", protocol="otlp", reason="validation") == 3


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "identity"])
def test_protobuf_logs_in_every_content_encoding(hub: LiveHub, encoding: str) -> None:
    raw = pb_logs(50).SerializeToString()
    body = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "zstd": zstandard.ZstdCompressor().compress,
        "identity": bytes,
    }[encoding](raw)
    r = post(hub, "/otlp/v1/logs", body, PB, **{"Content-Encoding": encoding})
    assert r.status_code == 200, r.content
    assert r.content == b"" and r.headers["content-type"] == PB  # an empty ExportLogsServiceResponse
    evs = found(hub, f"trace_id:{TRACE}")
    assert len(evs) == 50 and {e["service"] for e in evs} == {"pb"} and {e["span_id"] for e in evs} == {SPAN}


def _status(r: httpx.Response) -> tuple[int, str]:
    if r.headers["content-type"] == PB:
        s = Status.FromString(r.content)
        return s.code, s.message
    body = r.json()
    assert set(body) == {"code", "message"}, body
    return body["code"], body["message"]


def test_malformed_bodies_are_400_with_a_status_in_the_request_encoding(hub: LiveHub) -> None:
    r = post(hub, "/v1/logs", b"\xff\xff\xff not protobuf", PB)
    assert r.status_code == 400 and r.headers["content-type"] == PB
    code, message = _status(r)
    assert code == 3 and "not an OTLP ExportLogsServiceRequest" in message  # INVALID_ARGUMENT
    for body, says in (
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"resourceSpans": {"a": 1}}', "resourceSpans: expected a list"),
        # A value of the wrong JSON type anywhere: not the message at all (protobuf's parser agrees).
        (b'{"resourceLogs": ["x"]}', "malformed OTLP JSON: resource 1: expected an object, got str"),
        (json_logs({"timeUnixNano": "soon"}), "malformed OTLP JSON: timeUnixNano: expected an integer"),
        (json_logs({"attributes": [kv("a", {"intValue": True})]}), "malformed OTLP JSON: intValue"),
        (json_logs({"traceId": 7}), "malformed OTLP JSON: traceId: expected a hex string"),
    ):
        path = "/v1/traces" if b"Spans" in body else "/v1/logs"
        r = post(hub, path, body)
        assert r.status_code == 400 and r.headers["content-type"] == "application/json", r.text
        assert _status(r)[0] == 3 and says in _status(r)[1]
    r = post(hub, "/v1/logs", gzip.compress(b"x")[:-4], PB, **{"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "invalid compressed body" in _status(r)[1]
    assert found(hub, "") == []


def test_auth_content_type_and_encoding_errors(hub: LiveHub) -> None:
    body = json_logs({"body": {"stringValue": "x"}})
    r = post(hub, "/v1/logs", body, token="obi_wrong")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and _status(r)[0] == 16
    r = post(hub, "/v1/logs", body, token="")
    assert r.status_code == 401
    r = post(hub, "/v1/logs", pb_logs(1).SerializeToString(), PB, token=hub.read_token)
    assert r.status_code == 403 and r.headers["content-type"] == PB and _status(r)[0] == 7
    r = post(hub, "/v1/logs", body, "text/plain")
    assert r.status_code == 415 and "application/x-protobuf" in _status(r)[1]
    r = post(hub, "/v1/traces", body, **{"Content-Encoding": "br"})
    assert r.status_code == 415 and "Content-Encoding" in _status(r)[1]
    # The token as an exporter sends it when it does not URL-decode OTEL_EXPORTER_OTLP_HEADERS.
    r = httpx.post(
        f"{hub.url}/v1/logs",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer%20{hub.ingest_token}"},
    )
    assert r.status_code == 200, r.text
    assert httpx.get(f"{hub.url}/v1/logs").status_code == 405


def test_too_large_is_413(store_url: str) -> None:
    h = LiveHub(store_url, max_body_bytes=64 * 1024, max_lines=100).start()
    try:
        bomb = gzip.compress(pb_logs(1, "x" * 200_000).SerializeToString())  # small as sent, big decoded
        r = post(h, "/v1/logs", bomb, PB, **{"Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decoded body exceeds the limit" in _status(r)[1]
        r = post(h, "/v1/logs", pb_logs(101).SerializeToString(), PB)
        assert r.status_code == 413 and "101 log records exceeds the limit of 100" in _status(r)[1]
        assert post(h, "/v1/logs", pb_logs(100).SerializeToString(), PB).status_code == 200
    finally:
        h.stop()


def test_store_outage_is_503_with_retry_after(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    assert post(h, "/v1/logs", pb_logs(1).SerializeToString(), PB).status_code == 200
    h.store.close()  # the store goes away under a running hub
    r = post(h, "/v1/logs", pb_logs(1).SerializeToString(), PB)
    assert r.status_code == 503 and r.headers["retry-after"] == "5", r.content
    assert _status(r)[0] == 14  # UNAVAILABLE: the exporters retry it
    spans = {"resourceSpans": [{"scopeSpans": [{"spans": [_span("00000000000000aa", "", "s", 1, -1, 0.1)]}]}]}
    r = post(h, "/otlp/v1/traces", orjson.dumps(spans))
    assert r.status_code == 503 and r.headers["retry-after"] == "5" and _status(r)[0] == 14


def _span(
    span_id: str, parent: str, name: str, kind: int, start_s: float, dur_s: float, **extra: Any
) -> dict[str, Any]:
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": (start := ns(start_s)),
        "endTimeUnixNano": str(int(start) + round(dur_s * 1e9)),
        **extra,
    }


def test_json_spans_with_an_exception_event_and_the_trace_api(hub: LiveHub) -> None:
    root = _span(
        "0000000000000001",
        "",
        "POST /orders",
        2,
        -10,
        0.25,
        attributes=[
            kv("http.method", {"stringValue": "POST"}),
            kv("http.target", {"stringValue": "/orders?x=1"}),
            kv("http.status_code", {"intValue": "500"}),
            kv("enduser.id", {"stringValue": "u-1"}),
        ],
        status={"code": "STATUS_CODE_ERROR", "message": "boom"},
        events=[
            {
                "timeUnixNano": ns(-9.9),
                "name": "exception",
                "attributes": [
                    kv("exception.type", {"stringValue": "ValueError"}),
                    kv("exception.message", {"stringValue": "bad order"}),
                ],
            },
            {"timeUnixNano": ns(-9.95), "name": "cache miss", "attributes": [kv("key", {"stringValue": "o:1"})]},
        ],
    )
    child = _span("0000000000000002", "0000000000000001", "db", "SPAN_KIND_CLIENT", -9.99, 0.005)
    bad = _span("0000000000000003", "", "bad", 1, -9, 1, spanId="xyz")
    body = orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [kv("service.name", {"stringValue": "orders"})]},
                    "scopeSpans": [{"scope": {"name": "flask"}, "spans": [root, child, bad]}],
                }
            ]
        }
    )
    r = post(hub, "/v1/traces", body)
    assert r.status_code == 200, r.text
    assert (
        r.json()["partialSuccess"]["rejectedSpans"] == "1"
        and "span 3: spanId" in r.json()["partialSuccess"]["errorMessage"]
    )
    # Sent again (an exporter's retry): the spans are duplicates, not second copies.
    assert post(hub, "/v1/traces", body).status_code == 200
    spans = {e["name"]: e for e in found(hub, "kind:span")}
    assert set(spans) == {"POST /orders", "db"}
    top = spans["POST /orders"]
    assert top["level"] == "error" and top["user_id"] == "u-1" and top["attrs"]["duration_ms"] == 250.0
    assert (top["attrs"]["method"], top["attrs"]["path"], top["attrs"]["status"]) == ("POST", "/orders?x=1", 500)
    assert spans["db"]["attrs"]["span.kind"] == "client" and spans["db"]["attrs"]["duration_ms"] == 5.0
    (err,) = found(hub, "kind:error")  # the span's exception event, linked to the span
    assert (err["span_id"], err["trace_id"], err["name"]) == ("0000000000000001", TRACE, "POST /orders")
    assert err["message"] == "ValueError: bad order" and err["group_id"] and err["user_id"] == "u-1"
    (miss,) = found(hub, '"cache miss"')  # any other span event: a log line of the span
    assert miss["kind"] == "log" and miss["span_id"] == "0000000000000001" and miss["attrs"] == {"key": "o:1"}
    r = hub.get(f"/api/v1/trace/{TRACE}", **{"from": "-1d"})
    assert r.status_code == 200
    assert sorted(e["kind"] for e in r.json()["events"]) == ["error", "log", "span", "span"]
    # The same spans as protobuf: parsed by the same mapping (the ids are stored as the same hex).
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "orders-pb"
    sp = rs.scope_spans.add().spans.add(
        trace_id=bytes.fromhex("ab" * 16), span_id=bytes.fromhex("cd" * 8), name="pb span", kind=3
    )
    sp.start_time_unix_nano = int(ns(-5))
    sp.end_time_unix_nano = sp.start_time_unix_nano + 2_000_000
    r = post(hub, "/otlp/v1/traces", req.SerializeToString(), PB)
    assert r.status_code == 200 and ExportTraceServiceResponse.FromString(r.content) == ExportTraceServiceResponse()
    (pb,) = found(hub, '"pb span"')
    assert (pb["trace_id"], pb["span_id"], pb["service"]) == ("ab" * 16, "cd" * 8, "orders-pb")
    assert pb["attrs"]["duration_ms"] == 2.0 and pb["attrs"]["span.kind"] == "client"

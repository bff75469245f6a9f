"""Loki push, `POST /loki/api/v1/push` (obshub/ingest/loki.py): the `python-logging-loki`
handler (JSON), and protobuf + snappy bodies as Promtail and Alloy send them, built here from
Loki's published push.proto (PushRequest: streams 1 {labels 1, entries 2 {timestamp 1 {seconds
1, nanos 2}, line 2, structuredMetadata 3 {name 1, value 2}}}) by a protobuf writer of a few
lines; both stores; bad bodies, auth and the store's outage."""

from __future__ import annotations

import base64
import gzip
import logging
import time
from collections.abc import Sequence

import cramjam
import httpx
import orjson
import pytest
from logging_loki import LokiHandler

from tests.hubproc import LiveHub, metric

PUSH = "/loki/api/v1/push"


# -- a protobuf writer for PushRequest (the wire format: varint keys, length-delimited fields) ----


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def push_request(streams: Sequence[tuple[str, Sequence[tuple[int, str, dict[str, str]]]]]) -> bytes:
    """PushRequest of (labels text, [(ns, line, structured metadata)]), snappy-compressed."""
    out = b""
    for labels, entries in streams:
        stream = _field(1, labels.encode())
        for ns, line, meta in entries:
            ts = _field(1, ns // 1_000_000_000) + _field(2, ns % 1_000_000_000)
            entry = _field(1, ts) + _field(2, line.encode())
            for k, v in meta.items():
                entry += _field(3, _field(1, k.encode()) + _field(2, v.encode()))
            stream += _field(2, entry)
        stream += _field(3, 12345)  # `hash`, a varint the hub skips
        out += _field(1, stream)
    return bytes(cramjam.snappy.compress_raw(out))


def _post(h: LiveHub, body: bytes, ctype: str = "application/x-protobuf", **headers: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {h.ingest_token}", "Content-Type": ctype, **headers}
    return httpx.post(f"{h.url}{PUSH}", content=body, headers=headers, timeout=10)


def test_python_logging_loki_handler(hub: LiveHub) -> None:
    handler = LokiHandler(
        url=f"{hub.url}{PUSH}",
        tags={"service_name": "shop", "env": "prod", "host": "web-9", "team": "payments"},
        auth=("tenant-1", hub.ingest_token),
        version="1",
    )
    log = logging.getLogger("shop.orders")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("order 17 is late", extra={"tags": {"request_id": "req-17"}})
        log.error("order 18 failed")
        record = logging.makeLogRecord({"msg": "direct", "levelname": "INFO", "name": "shop.orders"})
        handler.emitter(record, "direct")  # raises ValueError unless the answer is Loki's 204
    finally:
        log.removeHandler(handler)
        handler.close()
        handler.emitter.close()
    events = {e["message"]: e for e in hub.search_all()}
    assert set(events) == {"order 17 is late", "order 18 failed", "direct"}
    late = events["order 17 is late"]
    assert (late["service"], late["env"], late["host"], late["level"], late["request_id"]) == (
        "shop",
        "prod",
        "web-9",
        "warning",
        "req-17",
    )
    assert late["logger"] == "shop.orders" and late["attrs"] == {"team": "payments"}
    assert events["order 18 failed"]["level"] == "error"


def test_protobuf_snappy_push_with_structured_metadata_and_a_retry_once(hub: LiveHub) -> None:
    t0 = 1_765_000_000_123_456_789
    body = push_request(
        [
            (
                '{app="api", instance="10.0.0.5:9100", env="staging", pod="api-7\\"x"}',
                [
                    (t0, "GET /orders 200", {"trace_id": "tr-1", "level": "debug"}),
                    (t0 + 1_000, "GET /orders 500", {"trace_id": "tr-2", "detected_level": "error"}),
                ],
            ),
            ('{service_name="worker", level="warn"}', [(t0 + 2_000, "queue slow", {})]),
        ]
    )
    r = _post(hub, body)
    assert r.status_code == 204 and r.content == b""
    assert _post(hub, body).status_code == 204  # Promtail's retry: Loki keeps one of identical entries
    events = {e["message"]: e for e in hub.search_all()}
    assert len(hub.search_all()) == 3
    ok = events["GET /orders 200"]
    assert ok["ts"] == "2025-12-06T05:46:40.123456Z"
    assert (ok["service"], ok["host"], ok["env"], ok["level"], ok["trace_id"]) == (
        "api",
        "10.0.0.5:9100",
        "staging",
        "debug",
        "tr-1",
    )
    assert ok["attrs"] == {"pod": 'api-7"x'}
    assert events["GET /orders 500"]["level"] == "error"
    assert metric(hub, "obshub_ingest_events_total", protocol="loki", outcome="accepted") == 3
    assert metric(hub, "obshub_ingest_events_total", protocol="loki", outcome="duplicate") == 3
    assert (events["queue slow"]["service"], events["queue slow"]["level"]) == ("worker", "warning")


def test_json_push_gzip_and_partial_failures(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    now = time.time_ns()
    doc = {
        "streams": [
            {
                "stream": {"job": "cron", "hostname": "batch-1", "level": "chatty"},
                "values": [[str(now), "nightly run", {"user_id": "u-1"}], [str(now + 1), "done"]],
            },
            {"stream": {"job": "cron"}, "values": [["yesterday", "bad time"], ["1", "seconds?"], [str(now), 7]]},
            {"stream": "not labels", "values": []},
        ]
    }
    r = _post(h, gzip.compress(orjson.dumps(doc)), "application/json", **{"Content-Encoding": "gzip"})
    assert r.status_code == 400
    answer = r.json()
    assert answer["stored"] == 2
    assert "4 rejected" in answer["error"] and "stream 2 entry 1: timestamp" in answer["error"]
    assert "stream 3" in answer["error"]
    events = {e["message"]: e for e in h.search_all()}
    assert set(events) == {"nightly run", "done"}
    run = events["nightly run"]
    assert (run["service"], run["host"], run["user_id"], run["level"]) == ("cron", "batch-1", "u-1", "info")
    assert run["attrs"] == {"level": "chatty"}  # a level only the client knows: kept, the line stored


def test_json_lines_give_their_fields_metadata_over_line_over_labels(hub: LiveHub) -> None:
    """Fluent Bit's `Line_Format json` (and JSON logs shipped by Promtail/Alloy): the line's
    fields map as a bulk document's do; a line that is not a JSON object stays the message."""
    t0 = time.time_ns()
    line = orjson.dumps(
        {
            "msg": "card declined",
            "level": "error",
            "request_id": "req-9",
            "user_id": "u-9",
            "host": "line-host",
            "cart": {"items": 3},
            "time": "2026-12-06T10:00:00Z",
        }
    ).decode()
    body = push_request(
        [
            (
                '{service="checkout", host="web-8", level="info"}',
                [
                    (t0, line, {"user_id": "u-meta"}),
                    (t0 + 1_000, '{"no_message": true}', {}),
                    (t0 + 2_000, "{not json} at all", {}),
                    (t0 + 3_000, '["a", "list"]', {}),
                ],
            )
        ]
    )
    assert _post(hub, body).status_code == 204
    events = {e["ts"]: e for e in hub.search_all()}
    assert len(events) == 4
    declined, no_message, not_json, a_list = (events[k] for k in sorted(events))
    assert declined["message"] == "card declined"
    assert (declined["service"], declined["level"], declined["request_id"]) == ("checkout", "error", "req-9")
    assert declined["host"] == "line-host"  # the line over the stream's label
    assert declined["user_id"] == "u-meta"  # structured metadata over the line
    assert declined["attrs"] == {"cart.items": 3, "time": "2026-12-06T10:00:00Z"}  # flattened as everywhere
    assert declined["ts"].startswith(time.strftime("%Y-%m-%d", time.gmtime(t0 / 1e9)))  # the entry's time
    assert (no_message["message"], no_message["attrs"]) == ('{"no_message": true}', {"no_message": True})
    assert (no_message["host"], no_message["level"]) == ("web-8", "info")
    assert (not_json["message"], not_json.get("attrs")) == ("{not json} at all", None)
    assert a_list["message"] == '["a", "list"]'


@pytest.mark.parametrize(
    ("body", "ctype", "status", "words"),
    [
        (b"", "application/x-protobuf", 400, "empty body"),
        (b"\x05not snappy", "application/x-protobuf", 400, "invalid snappy"),
        (_varint(1 << 40) + b"\x00", "application/x-protobuf", 413, "exceeds the limit"),
        (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\x03")), "application/x-protobuf", 400, "PushRequest"),
        (bytes(cramjam.snappy.compress_raw(b"\x0f")), "application/x-protobuf", 400, "PushRequest"),
        (b"{not json", "application/json", 400, "not JSON"),
        (b'{"streams": 3}', "application/json; charset=utf-8", 400, "streams"),
        (b"[]", "application/json", 400, "streams"),
    ],
)
def test_bad_bodies_are_a_400_or_413_naming_the_problem(
    sqlite_hub: LiveHub, body: bytes, ctype: str, status: int, words: str
) -> None:
    r = _post(sqlite_hub, body, ctype)
    assert r.status_code == status and words in r.json()["error"], r.text


def test_bad_labels_reject_their_stream_only(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    ns = time.time_ns()
    body = push_request([('app="no braces"', [(ns, "lost", {})]), ('{app="ok"}', [(ns, "kept", {})])])
    r = _post(h, body)
    assert r.status_code == 400 and "stream 1" in r.json()["error"] and r.json()["stored"] == 1
    assert [e["message"] for e in h.search_all()] == ["kept"]


def test_credentials_and_the_store_outage(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    body = push_request([('{app="a"}', [(time.time_ns(), "hello", {})])])
    basic = base64.b64encode(f"tenant:{h.ingest_token}".encode()).decode()
    assert _post(h, body, Authorization=f"Basic {basic}").status_code == 204
    assert _post(h, body, Authorization="Bearer nope").status_code == 401
    assert httpx.post(f"{h.url}{PUSH}", content=body).status_code == 401
    assert _post(h, body, Authorization=f"Bearer {h.read_token}").status_code == 403
    h.store.close()
    try:
        r = _post(h, body)
    finally:
        h.store.open()
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0

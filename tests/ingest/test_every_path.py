"""One record through every ingest path (native NDJSON, Sentry envelope, Elasticsearch `_bulk`,
Loki push): each stores the same fields, so one query on a correlation key finds all of them.
A new protocol adds its sender to SENDERS."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import orjson

from tests.hubproc import LiveHub

TS = "2026-12-06T10:11:12.345678Z"
TS_NS = 1_796_551_872_345_678_000
RECORD = {
    "message": "card declined for order 991",
    "level": "warning",
    "service": "checkout",
    "host": "web-4",
    "env": "prod",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "request_id": "req-991",
    "user_id": "u-77",
}


def _native(h: LiveHub, path_tag: str) -> httpx.Response:
    return h.ingest([{**RECORD, "ts": TS, "path": path_tag}])


def _sentry(h: LiveHub, path_tag: str) -> httpx.Response:
    event = {
        "event_id": "a" * 32,
        "timestamp": TS,
        "level": RECORD["level"],
        "message": RECORD["message"],
        "server_name": RECORD["host"],
        "environment": RECORD["env"],
        "user": {"id": RECORD["user_id"]},
        "tags": {"service": RECORD["service"], "request_id": RECORD["request_id"], "path": path_tag},
        "contexts": {"trace": {"trace_id": RECORD["trace_id"], "span_id": "00f067aa0ba902b7"}},
    }
    body = b"\n".join([orjson.dumps({"event_id": event["event_id"]}), b'{"type":"event"}', orjson.dumps(event)])
    return httpx.post(
        f"{h.url}/api/{h.project_id}/envelope/", content=body, headers={"Authorization": f"Bearer {h.ingest_token}"}
    )


def _es(h: LiveHub, path_tag: str) -> httpx.Response:
    doc = {
        "@timestamp": TS,
        "message": RECORD["message"],
        "log": {"level": RECORD["level"]},
        "host": {"name": RECORD["host"]},
        "service": {"environment": RECORD["env"]},
        "trace": {"id": RECORD["trace_id"]},
        "request_id": RECORD["request_id"],
        "user": {"id": RECORD["user_id"]},
        "path": path_tag,
    }
    body = orjson.dumps({"create": {"_index": f"{RECORD['service']}-2026.12.06"}}) + b"\n" + orjson.dumps(doc) + b"\n"
    basic = base64.b64encode(f"elastic:{h.ingest_token}".encode()).decode()
    r = httpx.post(f"{h.url}/es/_bulk", content=body, headers={"Authorization": f"Basic {basic}"})
    assert r.json()["errors"] is False, r.text
    return r


def _loki(h: LiveHub, path_tag: str) -> httpx.Response:
    labels = {"service_name": RECORD["service"], "host": RECORD["host"], "env": RECORD["env"], "path": path_tag}
    meta = {k: RECORD[k] for k in ("level", "trace_id", "request_id", "user_id")}
    body = {"streams": [{"stream": labels, "values": [[str(TS_NS), RECORD["message"], meta]]}]}
    return httpx.post(
        f"{h.url}/loki/api/v1/push", json=body, headers={"Authorization": f"Bearer {h.ingest_token}"}, timeout=10
    )


SENDERS: dict[str, Callable[[LiveHub, str], httpx.Response]] = {
    "native": _native,
    "sentry": _sentry,
    "es": _es,
    "loki": _loki,
}


def test_one_record_through_every_ingest_path(hub: LiveHub) -> None:
    for name, send in SENDERS.items():
        r = send(hub, name)
        assert r.status_code in (200, 204), (name, r.status_code, r.text)
    found = hub.search_all(f"request_id:{RECORD['request_id']}")
    by_path = {e["attrs"].get("path") or e["attrs"].get("tags.path"): e for e in found}
    assert set(by_path) == set(SENDERS), found
    for name, e in by_path.items():
        got = {k: e.get(k) for k in RECORD} | {"ts": e["ts"]}
        assert got == {**RECORD, "ts": TS}, name
    assert len(hub.search_all(f"trace_id:{RECORD['trace_id']}")) == len(SENDERS)

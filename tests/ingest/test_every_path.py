"""One record through every ingest path (native NDJSON, Sentry envelope, Elasticsearch `_bulk`,
Loki push as JSON and as protobuf, OTLP logs as JSON and as protobuf, obshub-agent tailing a
file): the stored events are equal apart from the fields a protocol cannot carry
(`CANNOT_CARRY`), so one query on a correlation key finds all of them. A new protocol adds its
sender to SENDERS."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.agent.agentproc import AgentProcess, write_config
from tests.hubproc import LiveHub, wait_until
from tests.ingest.test_loki import push_request

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


def _loki_proto(h: LiveHub, path_tag: str) -> httpx.Response:
    labels = {"service_name": RECORD["service"], "host": RECORD["host"], "env": RECORD["env"], "path": path_tag}
    meta = {k: RECORD[k] for k in ("level", "trace_id", "request_id", "user_id")}
    text = "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return httpx.post(
        f"{h.url}/loki/api/v1/push",
        content=push_request([(text, [(TS_NS, RECORD["message"], meta)])]),
        headers={"Authorization": f"Bearer {h.ingest_token}", "Content-Type": "application/x-protobuf"},
        timeout=10,
    )


def _otlp_json_body(path_tag: str) -> dict[str, Any]:
    def kv(k: str, v: str) -> dict[str, Any]:
        return {"key": k, "value": {"stringValue": v}}

    resource = [kv("service.name", RECORD["service"]), kv("host.name", RECORD["host"])]
    resource.append(kv("deployment.environment.name", RECORD["env"]))
    record = {
        "timeUnixNano": str(TS_NS),
        "severityNumber": 13,  # WARN
        "body": {"stringValue": RECORD["message"]},
        "traceId": RECORD["trace_id"],
        "attributes": [
            kv("enduser.id", RECORD["user_id"]),
            kv("request_id", RECORD["request_id"]),
            kv("path", path_tag),
        ],
    }
    return {"resourceLogs": [{"resource": {"attributes": resource}, "scopeLogs": [{"logRecords": [record]}]}]}


def _otlp_json(h: LiveHub, path_tag: str) -> httpx.Response:
    return httpx.post(
        f"{h.url}/v1/logs",
        content=orjson.dumps(_otlp_json_body(path_tag)),
        headers={"Authorization": f"Bearer {h.ingest_token}", "Content-Type": "application/json"},
        timeout=10,
    )


def _otlp_proto(h: LiveHub, path_tag: str) -> httpx.Response:
    # The same request through protobuf's own JSON reader: OTLP JSON's ids are hex, protobuf's
    # JSON reader wants base64, so the ids are set as bytes after parsing.
    doc = _otlp_json_body(path_tag)
    trace_hex = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0].pop("traceId")
    req = json_format.ParseDict(doc, ExportLogsServiceRequest())
    req.resource_logs[0].scope_logs[0].log_records[0].trace_id = bytes.fromhex(trace_hex)
    return httpx.post(
        f"{h.url}/v1/logs",
        content=req.SerializeToString(),
        headers={"Authorization": f"Bearer {h.ingest_token}", "Content-Type": "application/x-protobuf"},
        timeout=10,
    )


def _agent(h: LiveHub, path_tag: str) -> httpx.Response:
    """obshub-agent tailing a JSON log file on host web-4 (its config names the host and service)."""
    with tempfile.TemporaryDirectory() as d:
        logs = Path(d, "logs")
        logs.mkdir()
        line = {k: v for k, v in RECORD.items() if k not in ("host", "service")} | {"ts": TS, "path": path_tag}
        (logs / "app.jsonl").write_bytes(orjson.dumps(line) + b"\n")
        cfg = write_config(
            Path(d, "agent.toml"),
            [{"paths": [str(logs / "*.jsonl")], "format": "json", "service": RECORD["service"]}],
            hub=h.url,
            token=h.ingest_token,
            host=RECORD["host"],
            state_dir=str(Path(d, "state")),
            poll_interval_ms=50,
            batch_max_age_ms=100,
        )
        agent = AgentProcess(cfg, Path(d, "agent.log")).start()
        try:
            wait_until(lambda: h.search_all("service:checkout path:agent"), 30, "the agent's line stored", every=0.1)
        finally:
            assert agent.stop() == 0, agent.log()
    return httpx.Response(200)


SENDERS: dict[str, Callable[[LiveHub, str], httpx.Response]] = {
    "native": _native,
    "sentry": _sentry,
    "es": _es,
    "loki": _loki,
    "loki_proto": _loki_proto,
    "otlp_json": _otlp_json,
    "otlp_proto": _otlp_proto,
    "agent": _agent,
}


# What a protocol cannot carry as obshub stores the record (every other field must be equal):
CANNOT_CARRY: dict[str, tuple[str, ...]] = {
    # The Sentry endpoints store every event as an error (an issue) with the payload's contexts
    # as its `error`, grouped; its trace context carries a span id.
    "sentry": ("kind", "error", "group_id", "span_id"),
}
# The attributes a path adds besides the sender's `path` tag (where it put the tag, what it knows).
OWN_ATTRS: dict[str, set[str]] = {
    "sentry": {"tags.path"},  # Sentry tags are attrs `tags.*`
    "es": {"_index"},
    "agent": {"file", "offset"},  # where in which file the agent read the line
}
STORE_FIELDS = ("id", "received_at", "attrs")  # set by the hub or per path, compared apart


def test_one_record_through_every_ingest_path(hub: LiveHub) -> None:
    for name, send in SENDERS.items():
        r = send(hub, name)
        assert r.status_code in (200, 204), (name, r.status_code, r.text)
    found = hub.search_all(f"trace_id:{RECORD['trace_id']}")
    by_path = {e["attrs"].get("path") or e["attrs"].get("tags.path"): e for e in found}
    assert set(by_path) == set(SENDERS) and len(found) == len(SENDERS), found
    core = {name: {k: v for k, v in e.items() if k not in STORE_FIELDS} for name, e in by_path.items()}
    assert core["native"] == {**RECORD, "ts": TS, "kind": "log"}
    for name, e in by_path.items():
        skip = CANNOT_CARRY.get(name, ())
        want = {k: v for k, v in core["native"].items() if k not in skip}
        assert {k: v for k, v in core[name].items() if k not in skip} == want, name
        assert set(e["attrs"]) - {"path"} == OWN_ATTRS.get(name, set()), (name, e["attrs"])
    assert by_path["sentry"]["kind"] == "error" and by_path["sentry"]["group_id"]
    # One query on each correlation key finds the record from every path that carries the key.
    assert len(hub.search_all(f"user_id:{RECORD['user_id']}")) == len(SENDERS)
    assert len(hub.search_all(f"request_id:{RECORD['request_id']}")) == len(SENDERS)

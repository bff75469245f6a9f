"""OTLP/HTTP ingest throughput: the same log records as OTLP protobuf (`POST /v1/logs`) and as
native NDJSON (`POST /api/v1/ingest`), side by side in one run, then spans/s (`POST /v1/traces`).
The ratio OTLP/native is the figure (target >= 0.8); the box is shared and noisy, so the sides
alternate for `--rounds` rounds on fresh SQLite stores and the medians are printed, with the hub's
CPU µs per event (steadier than events/s).

    .venv/bin/python bench/otlp.py [--events 100000] [--batch 1000] [--senders 2] [--rounds 3]
                                   [--encoding gzip]

The events are bench/ingest.py's (8-word messages, service, host, trace id, user id, three
attributes); as OTLP each batch is one ResourceLogs per (service, host), the user id as
`enduser.id`, the request id and the attributes as attributes, the level as a severity number.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import zstandard
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _hub
from _hub import hub_process, post_all
from ingest import make_events
from tests.hubproc import make_project

_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=value))


def otlp_logs(batch: list[dict[str, Any]]) -> bytes:
    req = ExportLogsServiceRequest()
    by_source: dict[tuple[str, str], Any] = {}
    for e in batch:
        key = (e["service"], e["host"])
        scope = by_source.get(key)
        if scope is None:
            rl = req.resource_logs.add()
            rl.resource.attributes.extend([_kv("service.name", key[0]), _kv("host.name", key[1])])
            scope = by_source[key] = rl.scope_logs.add()
            scope.scope.name = e["logger"]
        rec = scope.log_records.add(
            time_unix_nano=e["ts"] * 1000,
            severity_number=_SEVERITY[e["level"]],
            trace_id=bytes.fromhex(e["trace_id"]),
        )
        rec.body.string_value = e["message"]
        rec.attributes.extend(
            [_kv("enduser.id", e["user_id"]), _kv("request_id", e["request_id"])]
            + [_kv(k, v) for k, v in e["attrs"].items()]
        )
    return req.SerializeToString()


def otlp_spans(batch: list[dict[str, Any]]) -> bytes:
    """One HTTP server span per event (the same service, host, trace and attributes)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "shop-web"), _kv("host.name", "web-1")])
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.flask"
    for i, e in enumerate(batch):
        start = e["ts"] * 1000
        sp = ss.spans.add(
            trace_id=bytes.fromhex(e["trace_id"]),
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"GET {e['attrs']['path']}",
            kind=2,
            start_time_unix_nano=start,
            end_time_unix_nano=start + e["attrs"]["duration_ms"] * 1_000_000,
        )
        sp.attributes.extend(
            [
                _kv("http.request.method", "GET"),
                _kv("http.route", e["attrs"]["path"]),
                _kv("http.response.status_code", e["attrs"]["status"]),
                _kv("enduser.id", e["user_id"]),
            ]
        )
    return req.SerializeToString()


def ndjson(batch: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in batch)


_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "identity": bytes,
    "gzip": lambda b: gzip.compress(b, 1),
    "zstd": zstandard.ZstdCompressor(level=1).compress,
}


def run(
    d: str, name: str, path: str, ctype: str, make: Callable[[list[dict[str, Any]]], bytes], args: argparse.Namespace
) -> tuple[float, float]:
    """(events/s, hub CPU µs per event) of one side on a fresh store."""
    events = make_events(args.events)
    bodies = [_COMPRESS[args.encoding](make(events[i : i + args.batch])) for i in range(0, len(events), args.batch)]
    store = f"sqlite:///{d}/{name}.db"
    creds = make_project(store, "bench")
    headers = {"Authorization": f"Bearer {creds['ingest_token']}", "Content-Type": ctype}
    if args.encoding != "identity":
        headers["Content-Encoding"] = args.encoding
    with hub_process(store) as port:
        secs = post_all(port, path, headers, bodies, args.senders)
        hub_cpu = _hub.LAST.cpu.get("hub", 0.0)
    return args.events / secs, hub_cpu / args.events * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--encoding", choices=tuple(_COMPRESS), default="gzip")
    args = ap.parse_args()
    print(
        f"{args.events} events, batches of {args.batch}, {args.senders} senders, {args.encoding} bodies, "
        f"{args.rounds} rounds, {os.cpu_count()} cores",
        file=sys.stderr,
    )
    sides = [
        ("native NDJSON  POST /api/v1/ingest", "/api/v1/ingest", "application/x-ndjson", ndjson),
        ("OTLP protobuf  POST /v1/logs", "/v1/logs", "application/x-protobuf", otlp_logs),
        ("OTLP spans     POST /v1/traces", "/v1/traces", "application/x-protobuf", otlp_spans),
    ]
    results: dict[str, list[tuple[float, float]]] = {s[0]: [] for s in sides}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            for i, (name, path, ctype, make) in enumerate(sides):
                results[name].append(run(d, f"r{r}-{i}", path, ctype, make, args))
                rate, cpu = results[name][-1]
                print(f"round {r + 1}: {name}: {rate:,.0f}/s, hub {cpu:.1f} µs CPU each", file=sys.stderr)
    native = statistics.median(x[0] for x in results[sides[0][0]])
    print()
    print(f"| {'path':<36} | {'median /s':>10} | {'rounds /s':<26} | {'hub CPU µs':>10} | {'vs native':>9} |")
    print(f"|{'-' * 38}|{'-' * 12}|{'-' * 28}|{'-' * 12}|{'-' * 11}|")
    for name, *_ in sides:
        rates = [x[0] for x in results[name]]
        med = statistics.median(rates)
        cpu = statistics.median(x[1] for x in results[name])
        each = ", ".join(f"{x:,.0f}" for x in rates)
        print(f"| {name:<36} | {med:>10,.0f} | {each:<26} | {cpu:>10.1f} | {med / native:>9.2f} |")
    print("(spans: events/s of kind=span events, one per span; vs native for scale only)")


if __name__ == "__main__":
    main()

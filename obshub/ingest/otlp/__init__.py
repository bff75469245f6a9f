"""OTLP/HTTP ingest: `POST /v1/logs` and `POST /v1/traces` (also under `/otlp`), so an OpenTelemetry
SDK or Collector with `OTEL_EXPORTER_OTLP_ENDPOINT=http://hub:8480/otlp` sends straight to the hub.

Both encodings of the spec, each with its front end turning records into plain Python values:
`application/x-protobuf` (protobuf.py) and `application/json` (proto3 JSON, protojson.py). One
mapping (mapping.py) makes obshub events of them (docs/otlp.md has the table). Answers as the
OTLP spec says, in the request's encoding (answers.py): 200 with an `Export*ServiceResponse`, a
`google.rpc.Status` for every error (400 malformed, 401/403, 413, 415, 429/503 with Retry-After:
the retryable ones). The path itself (auth, admission, body caps, decoding, digest, the store
write, telemetry) is obshub/ingest/pipeline.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from obshub.auth import bearer
from obshub.hub import hub_of
from obshub.ingest import pipeline
from obshub.ingest.otlp.answers import JSON, PROTOBUF, answer, status
from obshub.ingest.otlp.protobuf import parse_pb_logs, parse_pb_traces
from obshub.ingest.otlp.protojson import parse_json_logs, parse_json_traces
from obshub.settings import Settings

__all__ = ["PROTOBUF", "parse_json_logs", "parse_json_traces", "parse_pb_logs", "parse_pb_traces", "routes"]

_ENCODINGS = ("identity", "gzip", "deflate", "zstd")


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
        answer=answer(response, count_field, PROTOBUF),
        credentials=_credentials,
        encodings=_ENCODINGS,
        error_body=status(PROTOBUF),
    )
    js = replace(pb, parse=parse_json, answer=answer(response, count_field, JSON), error_body=status(JSON))
    return {PROTOBUF: pb, "application/protobuf": pb, JSON: js}


_LOGS = _edges(parse_pb_logs, parse_json_logs, ExportLogsServiceResponse, "rejected_log_records")
_TRACES = _edges(parse_pb_traces, parse_json_traces, ExportTraceServiceResponse, "rejected_spans")


def _endpoint(edges: dict[str, pipeline.Edge]) -> Callable[[Request], Any]:
    async def export(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        edge = edges.get(media)
        if edge is None:  # before auth: it costs nothing and tells nothing
            message = f"unsupported Content-Type {media or '(none)'!r}; use {PROTOBUF} or {JSON}"
            body, media_type = status(JSON)(415, message)
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

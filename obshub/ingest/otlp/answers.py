"""OTLP's answers, in the request's encoding, as the spec says: 200 with an
`Export*ServiceResponse` (its `partial_success` counting the records validation or the store
refused), a `google.rpc.Status` for every error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.responses import Response

from obshub.ingest import pipeline

__all__ = ["JSON", "PROTOBUF", "answer", "status"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_MAX_PROBLEMS = 5  # problems named in a partial success's error_message (the count is exact)


def _rejected(done: pipeline.Ingested) -> tuple[int, str]:
    """(records rejected, why): by validation, or by the store (a span and its events are one record)."""
    problems = done.parsed.problems + [(pos, f"record {pos}: store refused it: {why}") for pos, why in done.refused()]
    if not problems:
        return 0, ""
    records = {pos for pos, _ in problems}
    shown = "; ".join(why for _, why in sorted(problems)[:_MAX_PROBLEMS])
    more = f"; and {len(problems) - _MAX_PROBLEMS} more" if len(problems) > _MAX_PROBLEMS else ""
    return len(records), shown + more


def answer(
    response: Callable[[], ExportLogsServiceResponse | ExportTraceServiceResponse], count_field: str, encoding: str
) -> Callable[[pipeline.Ingested], Response]:
    def respond(done: pipeline.Ingested) -> Response:
        n, why = _rejected(done)
        if encoding == PROTOBUF:
            msg = response()
            if n:
                setattr(msg.partial_success, count_field, n)
                msg.partial_success.error_message = why
            return Response(msg.SerializeToString(), media_type=PROTOBUF)
        camel = "rejectedLogRecords" if count_field == "rejected_log_records" else "rejectedSpans"
        body: dict[str, Any] = {"partialSuccess": {camel: str(n), "errorMessage": why}} if n else {}
        return Response(orjson.dumps(body), media_type=JSON)

    return respond


# google.rpc.Code of each status the pipeline answers (the OTLP spec maps them back the same way).
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 413: 8, 415: 3, 429: 8, 503: 14}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def status(encoding: str) -> Callable[[int, str], tuple[bytes, str]]:
    """A google.rpc.Status {code, message} in the request's encoding (the protobuf one written
    by hand: two fields, no need for googleapis-common-protos)."""

    def encode(http: int, message: str) -> tuple[bytes, str]:
        code = _RPC_CODES.get(http, 2)  # 2: UNKNOWN
        if encoding == PROTOBUF:
            text = message.encode()
            return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text, PROTOBUF
        return orjson.dumps({"code": code, "message": message}), JSON

    return encode

"""`POST /api/v1/ingest`: NDJSON batches from agents and SDKs.

Order of checks, cheapest first, so a flood of bad requests costs little: auth (401/403) ->
concurrency slot (429) -> wire size (413: a Content-Length over the cap before the body is read,
else while reading it) -> Content-Encoding (415) -> decode with decoded-size cap (413/400) ->
per-line parse and validation (reported per line, valid lines kept) -> one store write (503/429
on store trouble) -> 200 only after the store said the batch is durable.
Normalized events go the one way every stored event goes: digest, then write (pipeline.py).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from obshub.auth import AuthError
from obshub.events import EventError, Limits, normalize
from obshub.hub import Hub, hub_of
from obshub.ingest import pipeline
from obshub.ingest.admission import Ticket, admitted, prepared
from obshub.ingest.body import BodyError, decode, read_body

__all__ = ["ingest", "parse_ndjson"]


class NotNdjson(Exception):
    """No line of the body is JSON: the whole request is refused with 400."""


def parse_ndjson(body: bytes, received_at: int, limits: Limits, max_lines: int
                 ) -> tuple[list[dict[str, Any]], list[int], list[dict[str, Any]]]:
    """Split and validate. Returns (events, their 1-based line numbers, rejections)."""
    events: list[dict[str, Any]] = []
    line_nos: list[int] = []
    rejected: list[dict[str, Any]] = []
    parsed_any = False
    loads = orjson.loads
    lines = body.split(b"\n")
    if len(lines) > max_lines + 1:
        raise BodyError(413, f"{len(lines)} lines exceeds the limit of {max_lines} per request")
    for i, line in enumerate(lines, 1):
        if not line or line.isspace():  # no copy, unlike strip()
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as e:
            rejected.append({"line": i, "error": f"invalid JSON: {e.args[0] if e.args else e}"})
            continue
        parsed_any = True
        try:
            events.append(normalize(obj, received_at, limits))
            line_nos.append(i)
        except EventError as e:
            rejected.append({"line": i, "error": str(e)})
    if not parsed_any and rejected:
        raise NotNdjson(f"body is not NDJSON: no line is valid JSON (line 1: {rejected[0]['error']})")
    return events, line_nos, rejected


def _prepare(raw: bytes, encoding: str | None, received_at: int, hub: Hub, max_decoded: int) -> tuple[
        bytes, pipeline.Batch, list[int], list[dict[str, Any]]]:
    s = hub.settings
    body = decode(raw, encoding, max_decoded)
    if not body.strip():
        raise BodyError(400, "empty body: send one JSON object per line")
    events, line_nos, rejected = parse_ndjson(body, received_at, s.limits, s.max_lines)
    return body, pipeline.digested(events, hub.scrubber), line_nos, rejected


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def ingest(request: Request) -> Response:
    hub = hub_of(request)
    try:
        project = await hub.authenticate(request, "ingest")
    except AuthError as e:  # answered by app.py; counted like every ingest answer
        hub.telemetry.ingest_requests.labels("native", str(e.status)).inc()
        raise
    return await admitted(hub, "native", request, lambda ticket: _ingest(request, hub, project.id, ticket),
                          lambda: _error(429, "too many concurrent ingest requests; retry later", {"Retry-After": "1"}))


async def _ingest(request: Request, hub: Hub, project_id: int, ticket: Ticket) -> JSONResponse:
    s = hub.settings
    tel = hub.telemetry
    received_at = time.time_ns() // 1000
    try:
        raw = await read_body(request, s.max_wire_bytes)
        # All CPU work (decode, parse, validate, digest) in one place: inline for a small body,
        # else one hop to the ingest threads (`admission.prepared`).
        body, batch, line_nos, rejected = await prepared(
            hub, ticket, _prepare, raw, request.headers.get("content-encoding"), received_at, hub)
    except BodyError as e:
        tel.ingest_rejected.labels("native", "limit" if e.status == 413 else "body").inc()
        return _error(e.status, str(e))
    except NotNdjson as e:
        tel.ingest_rejected.labels("native", "parse").inc()
        return _error(400, str(e))
    hub.observe_clock(request.headers.get("x-obshub-sent-at"), received_at, batch.events)
    result = await pipeline.write(hub, project_id, batch)  # StoreUnavailable/Overloaded -> 503/429
    for idx, reason in result.rejected:
        rejected.append({"line": line_nos[idx], "error": f"store refused the event: {reason}"})
    rejected.sort(key=lambda r: r["line"])
    n_rej = len(rejected)
    tel.ingest_events.labels("native", "accepted").inc(result.accepted)
    tel.ingest_events.labels("native", "duplicate").inc(result.duplicates)
    tel.ingest_events.labels("native", "rejected").inc(n_rej)
    if n_rej:
        tel.ingest_rejected.labels("native", "validation").inc(n_rej - len(result.rejected))
        tel.ingest_rejected.labels("native", "store").inc(len(result.rejected))
    tel.ingest_bytes.labels("native", "stored" if result.accepted or result.duplicates else "refused").inc(len(body))
    return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected})

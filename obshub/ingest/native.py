"""`POST /api/v1/ingest`: NDJSON batches from agents and SDKs.

This module knows the wire format and the answer; the path itself (auth, admission, body caps,
decoding, digest, the store write, telemetry) is obshub/ingest/pipeline.py. Order of checks,
cheapest first: auth (401/403) -> concurrency slot (429) -> wire size (413) and pace (408) ->
Content-Encoding (415) -> decode with decoded-size cap (413/400) -> per-line parse and validation (reported per
line, valid lines kept) -> one store write (503/429 on store trouble) -> 200 only after the
store said the batch is durable.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from obshub.auth import bearer
from obshub.errors import BodyError, FieldError, ParseError
from obshub.events import NormalizedEvent, normalize
from obshub.ingest import pipeline
from obshub.settings import Settings
from obshub.typed_line import decode_line

__all__ = ["EDGE", "ingest", "parse_ndjson", "routes"]

# A body whose lines are mostly not in `decode_line`'s form (an app's own JSON keys, nested
# attrs) stops trying it after this many misses, when they are over half its lines so far: a
# miss costs a partial parse before the general one (~0.3-1 µs).
_TYPED_MISSES = 16


def parse_ndjson(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    """Split and validate: every line a JSON object, normalized, or a problem naming its line.
    An empty body, or one without a single JSON line, is refused as a whole."""
    if not body or body.isspace():  # (no copy of the body, unlike strip())
        raise BodyError(400, "empty body: send one JSON object per line")
    limits, max_lines = settings.limits, settings.max_lines
    events: list[NormalizedEvent] = []
    line_nos: list[int] = []
    problems: list[tuple[int, str]] = []
    parsed_any = False
    loads = orjson.loads
    lines = body.split(b"\n")
    if len(lines) > max_lines + 1:
        raise BodyError(413, f"{len(lines)} lines exceeds the limit of {max_lines} per request")
    typed = True  # try `decode_line` first (agents' and SDKs' lines); see _TYPED_MISSES
    misses = 0
    for i, line in enumerate(lines, 1):
        if not line or line.isspace():  # no copy, unlike strip()
            continue
        if typed:
            try:
                ev = decode_line(line, received_at, limits)
            except FieldError as e:
                parsed_any = True
                problems.append((i, str(e)))
                continue
            if ev is not None:
                parsed_any = True
                events.append(ev)
                line_nos.append(i)
                continue
            misses += 1
            typed = misses <= _TYPED_MISSES or misses * 2 <= i
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as e:
            problems.append((i, f"invalid JSON: {e.args[0] if e.args else e}"))
            continue
        parsed_any = True
        try:
            events.append(normalize(obj, received_at, limits))
            line_nos.append(i)
        except FieldError as e:
            problems.append((i, str(e)))
    if not parsed_any and problems:
        raise ParseError(f"body is not NDJSON: no line is valid JSON (line 1: {problems[0][1]})")
    return pipeline.Parsed(events, line_nos, problems)


def _answer(done: pipeline.Ingested) -> Response:
    problems = done.parsed.problems + [(line, f"store refused the event: {why}") for line, why in done.refused()]
    problems.sort(key=lambda p: p[0])
    rejected = [{"line": line, "error": why} for line, why in problems]
    return JSONResponse({"accepted": done.result.accepted, "duplicates": done.result.duplicates, "rejected": rejected})


def _credentials(request: Request) -> tuple[str | None, int | None]:
    return bearer(request.headers), None


EDGE = pipeline.Edge(protocol="native", parse=parse_ndjson, answer=_answer, credentials=_credentials)


async def ingest(request: Request) -> Response:
    return await pipeline.run(request, EDGE)


routes: list[BaseRoute] = [
    Route("/api/v1/ingest", ingest, methods=["POST"]),
]

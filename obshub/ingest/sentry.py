"""Sentry-compatible ingest: `POST /api/<project_id>/envelope/` and `/store/`, so an unmodified
`sentry-sdk` pointed at the project's DSN just works.

Envelope = header line, then items: an item header line (JSON with `type`, optional `length`)
and its payload, either exactly `length` bytes or up to the next newline. We parse it
incrementally, keep every valid event item even when a later item is broken, and skip the item
types we do not store (sessions, client reports, transactions, check-ins, logs...) with a 200 —
the SDK must not retry or log errors for them.

Errors become `kind=error` events with trace/request/user ids filled from the Sentry payload, so
the trace view joins them with the logs of the same request on every host.

Every answer is in Relay's form (`{"detail": ...}`, CORS headers so browser SDKs can read it),
store trouble included: a store outage (503) or push-back (429) also carries Retry-After and
X-Sentry-Rate-Limits, which make the SDKs pause instead of retrying at once, and an event the
store refuses (an OpenSearch mapping conflict) is a 400 naming its item, never a silent 200.

This module knows the wire format and the answers; the path itself (auth, admission, body caps,
decoding, digest, the store write, telemetry) is obshub/ingest/pipeline.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from obshub.auth import SENTRY_ROUTES, bearer
from obshub.errors import ParseError
from obshub.events import NormalizedEvent, normalize
from obshub.ingest import pipeline
from obshub.settings import Settings

__all__ = ["ENVELOPE", "STORE", "from_sentry", "parse_envelope", "parse_envelope_body", "parse_store_body", "routes"]

_ENCODINGS = ("identity", "gzip", "deflate", "br", "zstd")
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Retry-After, X-Sentry-Rate-Limits"}
_FRAME_KEYS = ("module", "function", "filename", "abs_path", "lineno", "in_app", "context_line")
EVENT_ITEMS = ("event",)  # stored as errors; "transaction" etc. are accepted and skipped


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]], list[tuple[int, str]]]:
    """(envelope header, [(item header, payload)], [(item number, problem)]). Items before a
    problem are kept."""
    nl = body.find(b"\n")
    head_raw = body if nl < 0 else body[:nl]
    try:
        header = orjson.loads(head_raw) if head_raw.strip() else {}
    except orjson.JSONDecodeError:
        raise ParseError("envelope header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ParseError("envelope header must be a JSON object")
    items: list[tuple[dict[str, Any], bytes]] = []
    problems: list[tuple[int, str]] = []
    pos = len(body) if nl < 0 else nl + 1
    n = len(body)
    while pos < n:
        if body[pos : pos + 1] == b"\n":  # blank line between items
            pos += 1
            continue
        end = body.find(b"\n", pos)
        line = body[pos:] if end < 0 else body[pos:end]
        try:
            ih = orjson.loads(line)
            if not isinstance(ih, dict):
                raise ValueError
        except ValueError:
            problems.append((len(items) + 1, f"item {len(items) + 1}: header is not a JSON object"))
            break  # without a trustworthy header the rest cannot be framed
        pos = n if end < 0 else end + 1
        length = ih.get("length")
        if length is not None:
            if not isinstance(length, int) or length < 0:
                problems.append((len(items) + 1, f"item {len(items) + 1}: invalid length {length!r}"))
                break
            if pos + length > n:
                problems.append(
                    (
                        len(items) + 1,
                        f"item {len(items) + 1} ({ih.get('type')}): truncated, {n - pos} of {length} bytes",
                    )
                )
                break
            payload = body[pos : pos + length]
            pos += length
            if pos < n and body[pos : pos + 1] != b"\n":
                problems.append(
                    (
                        len(items) + 1,
                        f"item {len(items) + 1} ({ih.get('type')}): length {length} does not end at a newline",
                    )
                )
                break
            pos += 1
        else:
            end = body.find(b"\n", pos)
            payload = body[pos:] if end < 0 else body[pos:end]
            pos = n if end < 0 else end + 1
        items.append((ih, payload))
    return header, items, problems


def _exc(v: dict[str, Any]) -> dict[str, Any]:
    frames = []
    st = v.get("stacktrace")
    listed = st.get("frames") if isinstance(st, dict) else None
    for f in listed if isinstance(listed, list) else []:  # `"frames": true` was a TypeError, a 500
        if isinstance(f, dict):
            frames.append({k: x for k in _FRAME_KEYS if (x := f.get(k)) is not None})
    out: dict[str, Any] = {"type": v.get("type"), "value": v.get("value"), "stack": frames}
    if v.get("module"):
        out["module"] = v["module"]
    if isinstance(v.get("mechanism"), dict):
        out["mechanism"] = v["mechanism"]
    return out


def _message(ev: dict[str, Any]) -> str | None:
    le = ev.get("logentry")
    if isinstance(le, dict):
        return le.get("formatted") or le.get("message")
    m = ev.get("message")
    if isinstance(m, dict):
        return m.get("formatted") or m.get("message")
    return m if isinstance(m, str) else None


def _tags(ev: dict[str, Any]) -> dict[str, str]:
    tags = ev.get("tags")
    if isinstance(tags, list):  # [[k, v], ...] form
        return {str(t[0]): str(t[1]) for t in tags if isinstance(t, (list, tuple)) and len(t) == 2}
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}


def _header(request: dict[str, Any], name: str) -> str | None:
    headers = request.get("headers")
    items = headers.items() if isinstance(headers, dict) else (headers if isinstance(headers, list) else [])
    for kv in items:
        if isinstance(kv, (list, tuple)) and len(kv) == 2 and str(kv[0]).lower() == name:
            return str(kv[1])
    return None


def _obj(value: Any) -> dict[str, Any]:
    """The value if it is a JSON object, else {} (SDKs differ; malformed input must not crash)."""
    return value if isinstance(value, dict) else {}


def from_sentry(ev: dict[str, Any]) -> dict[str, Any]:
    """A Sentry event payload -> an obshub event (client form, validated by normalize)."""
    tags = _tags(ev)
    contexts = _obj(ev.get("contexts"))
    trace = _obj(contexts.get("trace"))
    user = _obj(ev.get("user"))
    request = _obj(ev.get("request"))
    exc = ev.get("exception")
    values = exc.get("values") if isinstance(exc, dict) else exc
    excs = [_exc(v) for v in values if isinstance(v, dict)] if isinstance(values, list) else []
    msg = _message(ev)
    if excs:
        error = excs[-1]  # Sentry lists the chain oldest first; the last one was raised
        if len(excs) > 1:
            error["chain"] = excs[:-1]
    else:
        error = {"type": None, "value": msg, "stack": []}
    crumbs = ev.get("breadcrumbs")
    crumbs = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
    for key, value in (
        ("breadcrumbs", crumbs),
        ("request", request),
        ("contexts", contexts),
        ("tags", tags),
        ("user", user),
        ("extra", ev.get("extra")),
        ("sdk", ev.get("sdk")),
        ("transaction", ev.get("transaction")),
        ("platform", ev.get("platform")),
    ):
        if value:
            error[key] = value
    if not msg and excs:
        msg = f"{error.get('type') or 'Error'}: {error.get('value') or ''}".rstrip(": ")
    out: dict[str, Any] = {
        "kind": "error",
        "message": msg,
        "error": error,
        "level": ev.get("level") or "error",
        "ts": ev.get("timestamp"),
        "logger": ev.get("logger"),
        "env": ev.get("environment"),
        "release": ev.get("release"),
        "host": ev.get("server_name"),
        "service": tags.get("service"),
        "trace_id": trace.get("trace_id"),
        "span_id": trace.get("span_id"),
        "request_id": tags.get("request_id") or tags.get("request-id") or _header(request, "x-request-id"),
        "user_id": user.get("id") or user.get("username") or user.get("email"),
        "session_id": tags.get("session_id"),
        "attrs": {"tags": {k: v for k, v in tags.items() if k not in ("service", "request_id", "session_id")}},
    }
    if isinstance(ev.get("event_id"), str) and ev["event_id"]:
        out["id"] = ev["event_id"].replace("-", "")
    if isinstance(ev.get("fingerprint"), list) and ev["fingerprint"]:
        out["fingerprint"] = ev["fingerprint"]
    if not out["attrs"]["tags"]:
        del out["attrs"]
    return {k: v for k, v in out.items() if v is not None}


def _sentry_key(request: Request) -> str | None:
    """The key from X-Sentry-Auth, `Authorization: Sentry …`, `?sentry_key=` or a bearer token."""
    auth = request.headers.get("x-sentry-auth") or ""
    if not auth and (request.headers.get("authorization") or "").lower().startswith("sentry "):
        auth = request.headers["authorization"]
    for part in auth.replace("Sentry ", "", 1).split(","):
        k, _, v = part.strip().partition("=")
        if k == "sentry_key" and v:
            return v
    if request.query_params.get("sentry_key"):
        return request.query_params["sentry_key"]
    return bearer(request.headers)


def _dsn_key(header_line: bytes) -> str | None:
    """The key in the envelope header's `dsn` (SDKs posting through a tunnel send only that):
    the pipeline reads the first line alone for it, before the rest of the body."""
    try:
        header = orjson.loads(header_line)
        dsn = header.get("dsn") if isinstance(header, dict) else None
        return (urlsplit(dsn).username or None) if isinstance(dsn, str) else None
    except ValueError:  # not JSON, or a DSN urlsplit cannot read (`http://[`)
        return None


async def preflight(request: Request) -> Response:
    return Response(
        status_code=200,
        headers={
            **_CORS,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-Sentry-Auth, Authorization",
            "Access-Control-Max-Age": "3600",
        },
    )


def _events(
    items: list[tuple[dict[str, Any], bytes]],
    problems: list[tuple[int, str]],
    received_at: int,
    settings: Settings,
    header: dict[str, Any],
) -> pipeline.Parsed:
    """The event items, mapped and validated; any other item type is skipped (a 200 all the same)."""
    events: list[NormalizedEvent] = []
    item_nos: list[int] = []
    skipped = 0
    for i, (ih, payload) in enumerate(items, 1):
        if ih.get("type") not in EVENT_ITEMS:
            skipped += 1
            continue
        try:
            raw = orjson.loads(payload)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            events.append(normalize(from_sentry(raw), received_at, settings.limits))
            item_nos.append(i)
        except ValueError as e:  # not JSON, not an object, or a FieldError from normalize
            problems.append((i, f"item {i} (event): {e}"))
        except RecursionError:  # str() of a tag or header nested ~1,000 deep (JSON allows 1,024): was a 500
            problems.append((i, f"item {i} (event): a value is nested too deeply (tags and headers are strings)"))
    return pipeline.Parsed(events, item_nos, problems, skipped, header)


def parse_envelope_body(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    """`POST /api/<id>/envelope/`: a header line and items."""
    if not body or body.isspace():  # as Relay: nothing to store is a client error, not an empty success
        raise ParseError("empty envelope: expected a header line and at least one item")
    header, items, problems = parse_envelope(body)
    return _events(items, problems, received_at, settings, header)


def parse_store_body(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    """`POST /api/<id>/store/` (older SDKs): the body is one event."""
    if not body or body.isspace():
        raise ParseError("empty request body")
    return _events([({"type": "event"}, body)], [], received_at, settings, {})


def _answer(done: pipeline.Ingested) -> Response:
    events, header = done.parsed.events, done.parsed.header
    event_id = header.get("event_id") or (events[0]["id"] if events else None)
    problems = [why for _, why in done.parsed.problems]
    problems += [f"item {item} (event): store refused the event: {why}" for item, why in done.refused()]
    if problems:
        # Valid items before and around the problem are stored; say so, with the reasons.
        stored = done.result.accepted + done.result.duplicates
        return JSONResponse(
            {"detail": "; ".join(problems), "id": event_id, "stored": stored}, status_code=400, headers=_CORS
        )
    return JSONResponse({"id": event_id}, headers=_CORS)


def _credentials(request: Request) -> tuple[str | None, int | None]:
    return _sentry_key(request), int(request.path_params["project_id"])


def _rate_limits(retry_after: int) -> dict[str, str]:
    """On every 429/503: a rate limit on every category (the empty field) makes an SDK hold all
    its events for `retry_after` s instead of retrying the next one at once."""
    return {"X-Sentry-Rate-Limits": f"{retry_after}::organization"}


ENVELOPE = pipeline.Edge(
    protocol="sentry",
    parse=parse_envelope_body,
    answer=_answer,
    credentials=_credentials,
    encodings=_ENCODINGS,
    scopes=SENTRY_ROUTES,
    body_token=_dsn_key,
    error_key="detail",
    headers=_CORS,
    pause_headers=_rate_limits,
)
STORE = replace(ENVELOPE, parse=parse_store_body, body_token=None)  # one event: no header line


async def envelope(request: Request) -> Response:
    return await pipeline.run(request, ENVELOPE)


async def store(request: Request) -> Response:
    return await pipeline.run(request, STORE)


routes: list[BaseRoute] = [
    Route("/api/{project_id:int}/envelope/", envelope, methods=["POST"]),
    Route("/api/{project_id:int}/store/", store, methods=["POST"]),
    Route("/api/{project_id:int}/envelope/", preflight, methods=["OPTIONS"]),
    Route("/api/{project_id:int}/store/", preflight, methods=["OPTIONS"]),
]

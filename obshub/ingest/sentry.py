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
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from obshub.auth import AuthError, bearer
from obshub.errors import StoreOverloaded, StoreUnavailable
from obshub.events import EventError, normalize
from obshub.ingest import pipeline
from obshub.ingest.admission import Ticket, admitted, prepared
from obshub.ingest.body import BodyError, decode, read_body
from obshub.store.base import Project

__all__ = ["EnvelopeError", "from_sentry", "parse_envelope", "routes"]

log = structlog.get_logger("obshub")

_ENCODINGS = ("identity", "gzip", "deflate", "br", "zstd")
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Retry-After, X-Sentry-Rate-Limits"}
_FRAME_KEYS = ("module", "function", "filename", "abs_path", "lineno", "in_app", "context_line")
EVENT_ITEMS = ("event",)  # stored as errors; "transaction" etc. are accepted and skipped


class EnvelopeError(Exception):
    pass


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]], list[str]]:
    """(envelope header, [(item header, payload)], problems). Items before a problem are kept."""
    nl = body.find(b"\n")
    head_raw = body if nl < 0 else body[:nl]
    try:
        header = orjson.loads(head_raw) if head_raw.strip() else {}
    except orjson.JSONDecodeError:
        raise EnvelopeError("envelope header is not valid JSON") from None
    if not isinstance(header, dict):
        raise EnvelopeError("envelope header must be a JSON object")
    items: list[tuple[dict[str, Any], bytes]] = []
    problems: list[str] = []
    pos = len(body) if nl < 0 else nl + 1
    n = len(body)
    while pos < n:
        if body[pos:pos + 1] == b"\n":  # blank line between items
            pos += 1
            continue
        end = body.find(b"\n", pos)
        line = body[pos:] if end < 0 else body[pos:end]
        try:
            ih = orjson.loads(line)
            if not isinstance(ih, dict):
                raise ValueError
        except ValueError:
            problems.append(f"item {len(items) + 1}: header is not a JSON object")
            break  # without a trustworthy header the rest cannot be framed
        pos = n if end < 0 else end + 1
        length = ih.get("length")
        if length is not None:
            if not isinstance(length, int) or length < 0:
                problems.append(f"item {len(items) + 1}: invalid length {length!r}")
                break
            if pos + length > n:
                problems.append(f"item {len(items) + 1} ({ih.get('type')}): truncated, "
                                f"{n - pos} of {length} bytes")
                break
            payload = body[pos:pos + length]
            pos += length
            if pos < n and body[pos:pos + 1] != b"\n":
                problems.append(f"item {len(items) + 1} ({ih.get('type')}): length {length} does not end at a newline")
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
    for key, value in (("breadcrumbs", crumbs), ("request", request), ("contexts", contexts), ("tags", tags),
                       ("user", user), ("extra", ev.get("extra")), ("sdk", ev.get("sdk")),
                       ("transaction", ev.get("transaction")), ("platform", ev.get("platform"))):
        if value:
            error[key] = value
    if not msg and excs:
        msg = f"{error.get('type') or 'Error'}: {error.get('value') or ''}".rstrip(": ")
    out: dict[str, Any] = {
        "kind": "error", "message": msg, "error": error, "level": ev.get("level") or "error",
        "ts": ev.get("timestamp"), "logger": ev.get("logger"), "env": ev.get("environment"),
        "release": ev.get("release"), "host": ev.get("server_name"), "service": tags.get("service"),
        "trace_id": trace.get("trace_id"), "span_id": trace.get("span_id"),
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


def _sentry_key(request: Request, envelope_header: dict[str, Any] | None = None) -> str | None:
    auth = request.headers.get("x-sentry-auth") or ""
    if not auth and (request.headers.get("authorization") or "").lower().startswith("sentry "):
        auth = request.headers["authorization"]
    for part in auth.replace("Sentry ", "", 1).split(","):
        k, _, v = part.strip().partition("=")
        if k == "sentry_key" and v:
            return v
    if request.query_params.get("sentry_key"):
        return request.query_params["sentry_key"]
    token = bearer(request.headers)
    if token:
        return token
    dsn = (envelope_header or {}).get("dsn")
    if isinstance(dsn, str):
        return urlsplit(dsn).username or None
    return None


def _err(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers={**_CORS, **(headers or {})})


async def preflight(request: Request) -> Response:
    return Response(status_code=200, headers={
        **_CORS, "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-Sentry-Auth, Authorization",
        "Access-Control-Max-Age": "3600"})


def _prepare(raw: bytes, encoding: str | None, kind: str, received_at: int, hub: Any, max_decoded: int
             ) -> tuple[bytes, dict[str, Any], pipeline.Batch, list[int], list[str], int]:
    """All CPU work in one place (see `admission.prepared`): decode, parse, map, validate, digest.
    Returns (body, envelope header, digested events, their 1-based item numbers, problems,
    skipped items)."""
    body = decode(raw, encoding, max_decoded, _ENCODINGS)
    if not body.strip():  # as Relay: nothing to store is a client error, not an empty success
        raise EnvelopeError("empty request body" if kind == "store" else
                            "empty envelope: expected a header line and at least one item")
    if kind == "store":
        header: dict[str, Any] = {}
        items = [({"type": "event"}, body)]
        problems: list[str] = []
    else:
        header, items, problems = parse_envelope(body)
    events: list[dict[str, Any]] = []
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
            events.append(normalize(from_sentry(raw), received_at, hub.settings.limits))
            item_nos.append(i)
        except (ValueError, EventError) as e:
            problems.append(f"item {i} (event): {e}")
    return body, header, pipeline.digested(events, hub.scrubber), item_nos, problems, skipped


async def ingest(request: Request) -> Response:
    hub = request.app.state.hub
    kind = "store" if request.url.path.rstrip("/").endswith("/store") else "envelope"
    project_id = int(request.path_params["project_id"])
    key = _sentry_key(request)
    return await admitted(hub, "sentry", request, lambda ticket: _ingest(request, hub, kind, project_id, key, ticket),
                          lambda: _err(429, "too many concurrent ingest requests",
                                       {"Retry-After": "1", "X-Sentry-Rate-Limits": "1::organization"}))


async def _ingest(request: Request, hub: Any, kind: str, project_id: int, key: str | None,
                  ticket: Ticket) -> Response:
    try:
        return await _handle(request, hub, kind, project_id, key, ticket)
    except (StoreUnavailable, StoreOverloaded) as e:
        # As Relay answers it, not with app.py's `{"error"}`; counted and logged there all the
        # same (`Hub.store_trouble`). A rate limit on every category (the empty field) makes
        # an SDK hold all its events for `retry_after` s instead of retrying the next one at once.
        wait = str(e.retry_after)
        return _err(e.status, hub.store_trouble(e, request.url.path),
                    {"Retry-After": wait, "X-Sentry-Rate-Limits": f"{wait}::organization"})


async def _handle(request: Request, hub: Any, kind: str, project_id: int, key: str | None,
                  ticket: Ticket) -> Response:
    s = hub.settings
    tel = hub.telemetry
    received_at = time.time_ns() // 1000
    project: Project | None = None
    try:
        if key is not None:  # cheap refusal before reading the body; the DSN-in-envelope case waits
            project = await hub.check_token(key, "ingest", project_id)
    except AuthError as e:
        return _err(e.status, str(e))
    try:
        raw = await read_body(request, s.max_wire_bytes)
        body, header, batch, item_nos, problems, skipped = await prepared(
            hub, ticket, _prepare, raw, request.headers.get("content-encoding"), kind, received_at, hub)
    except BodyError as e:
        tel.ingest_rejected.labels("sentry", "limit" if e.status == 413 else "body").inc()
        return _err(e.status, str(e))
    except EnvelopeError as e:
        tel.ingest_rejected.labels("sentry", "parse").inc()
        return _err(400, str(e))
    if project is None:
        try:
            project = await hub.check_token(_sentry_key(request, header), "ingest", project_id)
        except AuthError as e:
            return _err(e.status, str(e))
    assert project is not None  # checked above, or the request was answered
    events = batch.events
    if problems:
        tel.ingest_rejected.labels("sentry", "validation").inc(len(problems))
    result = await pipeline.write(hub, project.id, batch)
    stored = result.accepted + result.duplicates
    tel.ingest_events.labels("sentry", "accepted").inc(result.accepted)
    tel.ingest_events.labels("sentry", "duplicate").inc(result.duplicates)
    tel.ingest_events.labels("sentry", "skipped").inc(skipped)
    tel.ingest_bytes.labels("sentry", "stored" if stored else "refused").inc(len(body))
    if result.rejected:  # valid, but the store would not take them (e.g. a mapping conflict)
        tel.ingest_events.labels("sentry", "rejected").inc(len(result.rejected))
        tel.ingest_rejected.labels("sentry", "store").inc(len(result.rejected))
        log.warning("store refused events", protocol="sentry", project=project.id, refused=len(result.rejected),
                    reason=result.rejected[0][1])
        problems.extend(f"item {item_nos[i]} (event): store refused the event: {why}" for i, why in result.rejected)
    event_id = header.get("event_id") or (events[0]["id"] if events else None)
    if problems:
        # Valid items before and around the problem are stored; say so, with the reasons.
        return JSONResponse({"detail": "; ".join(problems), "id": event_id, "stored": stored},
                            status_code=400, headers=_CORS)
    return JSONResponse({"id": event_id}, headers=_CORS)


routes = [
    Route("/api/{project_id:int}/envelope/", ingest, methods=["POST"]),
    Route("/api/{project_id:int}/store/", ingest, methods=["POST"]),
    Route("/api/{project_id:int}/envelope/", preflight, methods=["OPTIONS"]),
    Route("/api/{project_id:int}/store/", preflight, methods=["OPTIONS"]),
]

"""The one path every stored event takes: the whole HTTP ingest path, and normalize -> digest ->
write for the hub's own producers.

HTTP ingest (`run`), the same steps for native NDJSON and the Sentry endpoints, cheapest first
so a flood of bad requests costs little:

    auth      the token, before anything else is spent (401/403), from a header or the URL
              before a byte of the body is read. A Sentry key sent only inside the envelope (its
              header line's `dsn`) is found by reading and decoding the first line alone, at
              most HEAD_BYTES (64 KiB), with no slot held (body.py `BodyReader.first_line`).
    admit     an admission slot (admission.py), taken only now: an unauthenticated request never
              holds one (429 when none frees up within `admission_wait_s`).
    read      the body, with the wire-size cap (413, before reading when Content-Length says so)
              and the deadline (408 past `body_timeout_s` + 1 s per `min_body_rate` bytes),
              which frees the slot. An answer given before the whole body arrived closes the
              connection.
    prepare   decode (415/413/400), the protocol's parse (per-line/item validation through
              `events.normalize`; 400 when nothing in the body is in the protocol's format),
              digest (scrub, parse traceback text, fingerprint). All CPU work, in one function
              (`_prepare`): right on the event loop for a small body, one hop to the hub's ingest
              threads for a big one (`_prepared`; the hop costs more than the work for a small
              body: Sentry events/s +6-19% without it, measured side by side).
    write     one store call through `Hub.write`, shared with other requests' batches (group
              commit, store/coalesce.py); the 2xx only once it is durable (503/429 on store
              trouble, with Retry-After).
    count     telemetry: every answer by status, admitted requests' latency, events by outcome,
              decoded bytes.

The protocols supply an `Edge`: where the credentials are, how to parse a decoded body (a pure
function: `native.parse_ndjson`, `sentry.parse_envelope_body`), and how to shape the answer.
Errors on the way are answered in the edge's error shape (`{"error"}`, or Relay's `{"detail"}`
with CORS headers for Sentry).

The hub's own producers (the demo loader, uptime results and check definitions) store through
`prepare` (normalize + digest) and `write` / `write_blocking` / `store_events`, so every stored
event is scrubbed, every error occurrence parsed and grouped by the same code, and every group
recorded by the same store call as its occurrences. A path that wrote around it stored errors
without groups (`serve --demo` once showed an empty Errors page). The store records a batch's
groups only for occurrences actually stored (Store.write_events), so a replayed batch of
duplicates creates and reopens nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from obshub.auth import INGEST_ROUTES
from obshub.digest import GroupSeen, Scrubber, digest
from obshub.errors import AuthError, BodyError, ObshubError, ParseError, Refused, StoreOverloaded, StoreUnavailable
from obshub.events import DEFAULT_LIMITS, Limits, NormalizedEvent, normalize, now_us
from obshub.http_errors import error_headers, error_message, error_response
from obshub.hub import Hub, hub_of, stored
from obshub.ingest.admission import INLINE_BODY_BYTES, INLINE_WIRE_BYTES, Ticket
from obshub.ingest.body import BodyReader, decode
from obshub.settings import Settings
from obshub.store.base import Project, Store, TokenScope, WriteResult

__all__ = [
    "Batch",
    "Edge",
    "Ingested",
    "Parsed",
    "digested",
    "prepare",
    "run",
    "store_events",
    "write",
    "write_blocking",
]

log = structlog.get_logger("obshub")


@dataclass
class Batch:
    """Normalized, digested events ready to store, with the error groups they belong to."""

    events: list[NormalizedEvent] = field(default_factory=list)
    groups: dict[str, GroupSeen] = field(default_factory=dict)


@dataclass
class Parsed:
    """What a protocol's parser made of one decoded body."""

    events: list[NormalizedEvent]
    positions: list[int]  # the 1-based line or item number of each event
    problems: list[tuple[int, str]]  # (line or item, why) of what could not be read or validated
    skipped: int = 0  # items of a type the hub accepts but does not store (Sentry sessions, ...)
    header: dict[str, Any] = field(default_factory=dict)  # the Sentry envelope header


@dataclass
class Ingested:
    """A stored request, for the edge to shape its answer from."""

    parsed: Parsed
    result: WriteResult  # result.rejected: (index into parsed.events, why) the store refused

    def refused(self) -> list[tuple[int, str]]:
        """(line or item, why) of each event the store refused (e.g. an OpenSearch mapping conflict)."""
        return [(self.parsed.positions[i], why) for i, why in self.result.rejected]


def _no_headers(retry_after: int) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Edge:
    """One ingest protocol, as the pipeline sees it."""

    protocol: str  # the telemetry label: native | sentry | otlp
    # Decoded body, receive time (µs), settings (limits) -> events. Raises ParseError or BodyError.
    parse: Callable[[bytes, int, Settings], Parsed]
    answer: Callable[[Ingested], Response]
    # (token or None, the project id the URL names or None): read before the body.
    credentials: Callable[[Request], tuple[str | None, int | None]]
    encodings: tuple[str, ...] = ("identity", "gzip", "zstd")
    # The token scopes this edge takes (obshub/auth.py): a DSN's key (`sentry`) only the Sentry edge.
    scopes: tuple[TokenScope, ...] = INGEST_ROUTES
    # The token in the body's first line, decoded (Sentry: the envelope header's DSN), tried
    # when `credentials` found none; None: a request without credentials is a 401 at once.
    body_token: Callable[[bytes], str | None] | None = None
    error_key: str = "error"  # {"error": ...}; Sentry's answers are Relay's {"detail": ...}
    headers: Mapping[str, str] = field(default_factory=dict)  # on every answer (Sentry: CORS)
    pause_headers: Callable[[int], dict[str, str]] = _no_headers  # beside Retry-After on a 429/503
    # (status, message) -> (body, media type) for an edge whose errors are not JSON objects of
    # `error_key` (OTLP: a google.rpc.Status, as protobuf or JSON); the headers stay the same.
    error_body: Callable[[int, str], tuple[bytes, str]] | None = None

    def error(self, exc: ObshubError, message: str | None = None) -> Response:
        """The answer to `exc` in this edge's form (obshub/http_errors.py)."""
        pause = self.pause_headers(exc.retry_after) if exc.retry_after is not None else {}
        if self.error_body is not None:
            body, media_type = self.error_body(exc.status, message or error_message(exc))
            headers = error_headers(exc, {**self.headers, **pause})
            return Response(body, status_code=exc.status, headers=headers, media_type=media_type)
        return error_response(exc, key=self.error_key, message=message, headers={**self.headers, **pause})


async def run(request: Request, edge: Edge) -> Response:
    """Auth -> admit -> read -> prepare -> write -> count, answering every failure on the way
    in the edge's form. Every answer is counted by status; admitted ones by latency too."""
    hub = hub_of(request)
    tel = hub.telemetry
    s = hub.settings
    reader = BodyReader(request, s.max_wire_bytes, s.body_timeout_s, s.min_body_rate)
    token, project_id = edge.credentials(request)
    try:
        if token is None and edge.body_token is not None:
            token = await _body_token(hub, reader, edge)
        project = await hub.check_token(token, edge.scopes, project_id)
    except AuthError as e:
        return _counted(hub, edge, reader, edge.error(e))
    except BodyError as e:  # 408: the first line came too slowly; 413: Content-Length too big
        tel.ingest_rejected.labels(edge.protocol, _reason(e)).inc()
        return _counted(hub, edge, reader, edge.error(e))
    except Refused as e:
        tel.ingest_rejected.labels(edge.protocol, "overload").inc()
        return _counted(hub, edge, reader, edge.error(e))
    started = time.perf_counter()
    ticket = await hub.admission_slots().admit(request.headers.get("content-length"), project.id)
    if ticket is None:
        tel.ingest_rejected.labels(edge.protocol, "overload").inc()
        return _counted(hub, edge, reader, edge.error(Refused()))
    tel.inflight.inc()
    try:
        response = await _admitted(request, hub, edge, project, reader, ticket)
    finally:
        ticket.release()
        tel.inflight.dec()
    tel.ingest_batch_seconds.labels(edge.protocol).observe(time.perf_counter() - started)
    return _counted(hub, edge, reader, response)


async def _body_token(hub: Hub, reader: BodyReader, edge: Edge) -> str | None:
    """The token in the body's first line (a Sentry envelope header's `dsn`), read before any
    slot is taken and before the rest of the body: at most HEAD_BYTES as sent and decoded, by at
    most as many requests at once as there are small slots (429 beyond: a client can always
    send its key in a header or the URL instead)."""
    assert edge.body_token is not None
    heads = hub.admission_slots().heads
    if heads.locked():
        raise Refused
    async with heads:
        line = await reader.first_line(reader.request.headers.get("content-encoding"), edge.encodings)
    return None if line is None else edge.body_token(line)


def _reason(e: BodyError) -> str:
    return {413: "limit", 408: "slow"}.get(e.status, "body")


def _counted(hub: Hub, edge: Edge, reader: BodyReader, response: Response) -> Response:
    """Count the answer. One given before the whole body arrived closes the connection: the
    client may still be sending it, and a trickle would keep an idle connection alive."""
    if not reader.complete:
        response.headers["connection"] = "close"
    hub.telemetry.ingest_requests.labels(edge.protocol, str(response.status_code)).inc()
    return response


async def _admitted(
    request: Request, hub: Hub, edge: Edge, project: Project, reader: BodyReader, ticket: Ticket
) -> Response:
    tel = hub.telemetry
    p = edge.protocol
    received_at = now_us()
    try:
        raw = await reader.read()
        ticket.read_done()
        size, batch, parsed = await _prepared(
            hub, ticket, edge, raw, request.headers.get("content-encoding"), received_at
        )
        hub.observe_clock(project.id, request.headers.get("x-obshub-sent-at"), received_at, batch.events)
        result = await write(hub, project.id, batch)
    except Refused as e:  # a small request whose body turned out big found no full slot
        tel.ingest_rejected.labels(p, "overload").inc()
        return edge.error(e)
    except BodyError as e:
        tel.ingest_rejected.labels(p, _reason(e)).inc()
        return edge.error(e)
    except ParseError as e:
        tel.ingest_rejected.labels(p, "parse").inc()
        return edge.error(e)
    except (StoreUnavailable, StoreOverloaded) as e:
        # Counted and logged in one place for every route (`Hub.store_trouble`). Sentry's pause
        # headers rate-limit every category, so an SDK holds all its events for `retry_after`
        # s instead of retrying the next one at once.
        return edge.error(e, hub.store_trouble(e, request.url.path))
    done = Ingested(parsed, result)
    invalid, refused = len(parsed.problems), len(result.rejected)
    tel.ingest_events.labels(p, "accepted").inc(result.accepted)
    tel.ingest_events.labels(p, "duplicate").inc(result.duplicates)
    if parsed.skipped:
        tel.ingest_events.labels(p, "skipped").inc(parsed.skipped)
    if invalid or refused:  # (a label lookup costs a lock and a dict: only when there is news)
        tel.ingest_events.labels(p, "rejected").inc(invalid + refused)
        tel.ingest_rejected.labels(p, "validation").inc(invalid)
    if refused:  # valid, but the store would not take them (e.g. a mapping conflict)
        tel.ingest_rejected.labels(p, "store").inc(refused)
        log.warning(
            "store refused events", protocol=p, project=project.id, refused=refused, reason=result.rejected[0][1]
        )
    tel.ingest_bytes.labels(p, "stored" if result.accepted or result.duplicates else "refused").inc(size)
    return edge.answer(done)


async def _prepared(
    hub: Hub, ticket: Ticket, edge: Edge, raw: bytes, encoding: str | None, received_at: int
) -> tuple[int, Batch, Parsed]:
    """`_prepare` on the event loop for a small body (as sent and decoded), else, or when it
    decodes beyond INLINE_BODY_BYTES, on the hub's ingest threads with the real limit, holding a
    full admission slot (Refused when none frees up)."""
    limit = hub.settings.max_body_bytes
    if len(raw) <= INLINE_WIRE_BYTES:
        bound = min(limit, INLINE_BODY_BYTES)
        try:
            return _prepare(hub, edge, raw, encoding, received_at, bound)
        except BodyError as e:
            if e.status != 413 or bound >= limit:
                raise
    await ticket.need_full_slot()
    return await hub.offload(_prepare, hub, edge, raw, encoding, received_at, limit)


def _prepare(
    hub: Hub, edge: Edge, raw: bytes, encoding: str | None, received_at: int, max_decoded: int
) -> tuple[int, Batch, Parsed]:
    """All CPU work of a request: decode, parse (and normalize), digest. Returns (decoded
    size, the batch to store, what the parser found)."""
    body = decode(raw, encoding, max_decoded, edge.encodings)
    parsed = edge.parse(body, received_at, hub.settings)
    return len(body), digested(parsed.events, hub.scrubber), parsed


# -- the hub's own producers, and the write every path shares -------------------------------------


def digested(events: list[NormalizedEvent], scrubber: Scrubber) -> Batch:
    """Digest normalized events in place (scrub, parse tracebacks, group)."""
    return Batch(events, digest(events, scrubber))


def prepare(
    raw: Iterable[Mapping[str, Any]], received_at: int, scrubber: Scrubber, limits: Limits = DEFAULT_LIMITS
) -> Batch:
    """Normalize and digest events the hub makes itself (demo data, uptime results, check
    definitions). They are valid by construction: a FieldError here is a bug, and raises. Only
    here may events use the kinds and ids reserved for the hub (`events.RESERVED_KINDS`)."""
    return digested([normalize(dict(r), received_at, limits, own=True) for r in raw], scrubber)


async def write(hub: Hub, project_id: int, batch: Batch) -> WriteResult:
    """Store a batch through `Hub.write`, awaited on the event loop (durable when this returns)."""
    if not batch.events:
        return WriteResult()
    return await hub.write(project_id, batch.events, batch.groups)


def write_blocking(store: Store, project_id: int, batch: Batch) -> WriteResult:
    """`write` for a thread off the event loop (probe threads, check definitions written from a
    worker thread): the same store call, waited for here."""
    if not batch.events:
        return WriteResult()
    return store.write_events(project_id, stored(batch.events), list(batch.groups.values()))


def store_events(
    store: Store, project_id: int, raw: Iterable[Mapping[str, Any]], received_at: int, scrubber: Scrubber | None = None
) -> WriteResult:
    """`prepare` + `write_blocking`: how the hub's own producers store what they make."""
    return write_blocking(store, project_id, prepare(raw, received_at, scrubber or Scrubber()))

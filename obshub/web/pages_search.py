"""Search, view-in-context, CSV export and live tail.

Search renders one page of results (newest first) with facets for level/service/host/env; a
query the parser rejects is shown back with a caret under the offending column. Facets count
the newest 10,000 matches (`FACET_SAMPLE`), so the page costs the same on a day of 700k events
as on a quiet one, and says "in the newest 10,000 matches" when there were more. CSV export is
the API's export (obshub/query/export.py): every match, oldest first, streamed page by page, so
no dump of any size sits in memory.
The live tail is Server-Sent Events: the server polls the store with the user's filter and
sends only new lines (obshub/query/tail.py); each stream lasts `STREAM_S` and the browser's
EventSource reconnects (sending Last-Event-ID), so a hub shutting down waits on an open tail for
seconds, not forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from obshub.errors import QueryError, StoreError
from obshub.events import format_ts, now_us, parse_ts
from obshub.hub import Hub, hub_of
from obshub.query import aggregate
from obshub.query.context import BY, CONTEXT_MAX, context
from obshub.query.export import chunks, export_request
from obshub.query.search import MAX_LIMIT, facets, parse_query, search
from obshub.query.tail import Tail
from obshub.web.charts import bars
from obshub.web.common import TimeRange, quote_value, render, time_range, url_with
from obshub.web.export import start_export
from obshub.web.session import Session

__all__ = ["context_page", "csv_export", "search_page", "tail_page", "tail_stream"]

FACETS = ("level", "service", "host", "env")
FACET_LIMIT = 8
PAGE_SIZES = (50, 100, 500)
CONTEXT_DEFAULT = 20
STREAM_S = 15.0  # one SSE connection; EventSource reconnects by itself. Also bounds how long a
# stopping hub waits on an open tail (uvicorn waits for running responses unless
# timeout_graceful_shutdown is set)
POLL_S = 1.0  # tail latency vs store load: one indexed query per second per open tail


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    try:
        n = int(raw)
    except ValueError:
        raise QueryError(f"limit: expected one of {PAGE_SIZES}") from None
    if not 1 <= n <= MAX_LIMIT:
        raise QueryError(f"limit: must be between 1 and {MAX_LIMIT}")
    return n


async def search_page(request: Request, session: Session) -> Response:
    store = hub_of(request).store
    pid = session.project_id
    q = request.query_params.get("q", "")
    # A query the parser rejects is shown back (with its range, when that parses); else a bad range.
    tr: TimeRange | None = None
    error: QueryError | None = None
    try:
        tr = time_range(request)
    except QueryError as e:
        error = e
    try:
        node = parse_query(q)
    except QueryError as e:
        node, error = None, e
    result: dict[str, Any] = {"events": [], "next_cursor": None}
    found: dict[str, Any] = {"facets": {}, "counted": 0, "approximate": False}
    histogram: list[dict[str, Any]] = []
    limit = 100
    if error is None and tr is not None:
        try:
            limit = _limit(request)
            # Results, facets and histogram side by side: the page costs the slowest, not the sum.
            result, found, histogram = await asyncio.gather(
                run_in_threadpool(
                    search, store, pid, node, tr.start, tr.end, limit, request.query_params.get("cursor") or None
                ),
                run_in_threadpool(facets, store, pid, node, tr.start, tr.end, FACETS, FACET_LIMIT),
                run_in_threadpool(_histogram, hub_of(request), pid, q, tr),
            )
        except QueryError as e:
            error = e
    status = 400 if error else 200
    return render(
        request,
        "search.html",
        {
            "q": q,
            "tr": tr or _time_range_fallback(request),
            "error": error,
            "events": result["events"],
            "next_url": url_with(request, cursor=result["next_cursor"]) if result["next_cursor"] else None,
            "first_url": url_with(request, cursor=None) if request.query_params.get("cursor") else None,
            "facets": found["facets"],
            "facets_sampled": found["counted"] if found["approximate"] else None,
            "limit": limit,
            "page_sizes": PAGE_SIZES,
            "csv_url": url_with(request, "/search.csv", cursor=None, limit=None),
            "tail_url": url_with(request, "/tail", cursor=None, limit=None, **{"from": None, "to": None}),
            "facet_url": lambda f, v, neg=False: _facet_url(request, q, f, v, neg),
            "histogram": _histogram_chart(histogram),
            "zoom_url": lambda t0, t1: url_with(request, cursor=None, **{"from": t0, "to": t1}),
        },
        status,
    )


def _histogram(hub: Hub, pid: int, q: str, tr: TimeRange) -> list[dict[str, Any]]:
    """Matches per time bucket over the range (GET /api/v1/aggregate's count with interval=auto:
    at most 200 bars), empty buckets included; each point also carries its bucket's end `t1`,
    the range a click zooms to. [] without a start (a search over all time)."""
    if tr.start is None:
        return []
    end = tr.end if tr.end is not None else now_us()
    try:
        req = aggregate.parse_request({"q": q, "from": format_ts(tr.start), "to": format_ts(end), "interval": "auto"})
    except QueryError:
        return []  # a range of years is more than MAX_BUCKETS days: the search goes on without
    root = aggregate.to_json(req, aggregate.aggregate(hub.store, pid, req))
    step = root["interval_s"] * 1_000_000
    counts = {parse_ts(p["t"]): p["count"] for p in root["total"]["series"]}
    first = req.start - req.start % step
    return [
        {"t": format_ts(t), "t1": format_ts(t + step), "count": counts.get(t, 0)} for t in range(first, req.end, step)
    ]


def _histogram_chart(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not points:
        return None
    chart = bars(points, height=110, bottom=22)
    for r, p in zip(chart["rects"], points, strict=True):
        r["t1"] = p["t1"]
    return chart


def _time_range_fallback(request: Request) -> TimeRange:
    qp = request.query_params
    return TimeRange(qp.get("from", "-24h"), qp.get("to", ""), None, None)


def _facet_url(request: Request, q: str, field: str, value: str, negate: bool) -> str:
    term = f"{'-' if negate else ''}{field}:{quote_value(str(value))}"
    new_q = f"{q} {term}".strip() if term not in q.split() else q
    return url_with(request, q=new_q, cursor=None)


# ------------------------------------------------------------------------------------ context


async def context_page(request: Request, session: Session) -> Response:
    event_id = request.path_params["event_id"]
    by = request.query_params.get("by", "host")
    if by not in BY:
        by = "host"
    try:
        n = max(1, min(CONTEXT_MAX, int(request.query_params.get("n", CONTEXT_DEFAULT))))
    except ValueError:
        n = CONTEXT_DEFAULT
    ctx = await run_in_threadpool(context, hub_of(request).store, session.project_id, event_id, by, n)
    return render(
        request, "context.html", {"event_id": event_id, "by": by, "n": n, **ctx}, 404 if ctx["anchor"] is None else 200
    )


# ---------------------------------------------------------------------------------------- CSV


async def csv_export(request: Request, session: Session) -> Response:
    """The API's export (`GET /api/v1/export`, same rows and columns) for a browser session, with
    cells a spreadsheet would run as formulas neutralised."""
    try:
        node = parse_query(request.query_params.get("q", ""))
        tr = time_range(request)
        req = export_request(node, tr.start, tr.end, "csv", request.query_params.get("columns"), "1")
    except QueryError as e:
        return PlainTextResponse(f"cannot export: {e}", status_code=400)
    return await start_export(chunks(hub_of(request).store, session.project_id, req), req, request.url.path)


# ---------------------------------------------------------------------------------- live tail


async def tail_page(request: Request, session: Session) -> Response:
    q = request.query_params.get("q", "")
    error = None
    try:
        parse_query(q)
    except QueryError as e:
        error = e
    return render(
        request,
        "tail.html",
        {"q": q, "error": error, "search_url": url_with(request, "/search")},
        400 if error else 200,
    )


def _tail_fields(e: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "id",
        "ts",
        "level",
        "kind",
        "host",
        "service",
        "message",
        "name",
        "request_id",
        "trace_id",
        "user_id",
        "session_id",
    )
    out = {k: e[k] for k in keep if e.get(k) is not None}
    if e.get("error") and not out.get("message"):
        out["message"] = f"{e['error'].get('type', 'Error')}: {e['error'].get('value', '')}"
    return out


def _sse(event: str | None, data: Any, ident: str | None = None) -> str:
    out = f"event: {event}\n" if event else ""
    if ident:
        out += f"id: {ident}\n"
    return out + "data: " + orjson.dumps(data).decode() + "\n\n"


async def _tail(tail: Tail) -> AsyncIterator[str]:
    yield "retry: 1500\n\n"
    deadline = time.monotonic() + STREAM_S
    while time.monotonic() < deadline:
        try:
            fresh, newest = await run_in_threadpool(tail.poll, now_us())
        except StoreError as err:
            yield _sse("problem", {"message": f"store unavailable, retrying: {err}"})
            await asyncio.sleep(POLL_S * 3)
            continue
        if fresh:
            yield _sse("lines", [_tail_fields(e) for e in fresh], str(newest))
        else:
            yield ": idle\n\n"  # also how a closed connection is noticed (the write fails)
        await asyncio.sleep(POLL_S)
    yield _sse("reconnect", {"reason": "stream rotated"})


def _since(raw: str | None) -> int | None:
    """Where a resumed tail starts: the `ts` (µs) of the newest line it had, sent back as the
    SSE Last-Event-ID (or `since`). ASCII digits only: `²` passed `isdigit()` and failed `int()`."""
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise QueryError(f"since: expected an event time in microseconds since the epoch, got {raw[:40]!r}")
    return int(raw)


async def tail_stream(request: Request, session: Session) -> Response:
    try:
        node = parse_query(request.query_params.get("q", ""))
    except QueryError as e:
        return PlainTextResponse(str(e), status_code=400)
    try:
        since = _since(request.headers.get("last-event-id") or request.query_params.get("since"))
    except QueryError as e:
        return PlainTextResponse(str(e), status_code=400)
    tail = Tail(hub_of(request).store, session.project_id, node, since)
    return StreamingResponse(
        _tail(tail), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )

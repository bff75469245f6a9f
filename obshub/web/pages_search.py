"""Search, view-in-context, CSV export and live tail.

Search renders one page of results (newest first) with facets for level/service/host/env; a
query the parser rejects is shown back with a caret under the offending column. Facets count
the newest 10,000 matches (`FACET_SAMPLE`), so the page costs the same on a day of 700k events
as on a quiet one, and says "in the newest 10,000 matches" when there were more. CSV export is
the API's export (obshub/query/export.py): every match, oldest first, streamed page by page, so
no dump of any size sits in memory.
The live tail is Server-Sent Events: the server polls the store with the user's filter and
sends only new lines; each stream lasts `STREAM_S` and the browser's EventSource reconnects
(sending Last-Event-ID), so a hub shutting down waits on an open tail for seconds, not forever.
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
from obshub.events import to_public
from obshub.query.export import export_request
from obshub.query.search import MAX_LIMIT, search, trace
from obshub.query.search import parse_query as _parse
from obshub.store.base import Sampled, SearchRequest, Store
from obshub.store.querylang import Field, Node
from obshub.web.common import TimeRange, quote_value, render, time_range, url_with
from obshub.web.export import start_export
from obshub.web.session import Session

__all__ = ["context_page", "csv_export", "search_page", "tail_page", "tail_stream"]

FACETS = ("level", "service", "host", "env")
FACET_LIMIT = 8
PAGE_SIZES = (50, 100, 500)
CONTEXT_DEFAULT = 20
CONTEXT_MAX = 200
STREAM_S = 15.0  # one SSE connection; EventSource reconnects by itself. Also bounds how long a
# stopping hub waits on an open tail (uvicorn waits for running responses unless
# timeout_graceful_shutdown is set)
POLL_S = 1.0  # tail latency vs store load: one indexed query per second per open tail
LOOKBACK_US = 120_000_000  # late lines (agent spooling) up to 2 min old still reach the tail
BACKFILL = 20  # lines shown when a tail opens, so it is never blank


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    try:
        n = int(raw)
    except ValueError:
        raise QueryError(f"limit: expected one of {PAGE_SIZES}") from None
    if not 1 <= n <= MAX_LIMIT:
        raise QueryError(f"limit: must be between 1 and {MAX_LIMIT}")
    return n


def _query_state(request: Request) -> tuple[str, Node | None, TimeRange | None, QueryError | None]:
    """(q as typed, parsed query, range, first error) - errors are shown, not raised."""
    q = request.query_params.get("q", "")
    try:
        node = _parse(q)
        return q, node, time_range(request), None
    except QueryError as e:
        tr = None
        try:
            tr = time_range(request)
        except QueryError:
            pass
        return q, None, tr, e


async def search_page(request: Request, session: Session) -> Response:
    store: Store = request.app.state.hub.store
    pid = session.project_id
    q, node, tr, error = _query_state(request)
    result: dict[str, Any] = {"events": [], "next_cursor": None}
    facets: Sampled[dict[str, list[tuple[str, int]]]] = Sampled({}, 0, False)
    limit = 100
    if error is None and tr is not None:
        try:
            limit = _limit(request)
            # Results and facets side by side: the page costs the slower of the two, not the sum.
            result, facets = await asyncio.gather(
                run_in_threadpool(search, store, pid, node, tr.start, tr.end, limit,
                                  request.query_params.get("cursor") or None),
                run_in_threadpool(store.facets, pid, node, tr.start, tr.end, FACETS, FACET_LIMIT))
        except QueryError as e:
            error = e
    status = 400 if error else 200
    return render(request, "search.html", {
        "q": q, "tr": tr or _time_range_fallback(request), "error": error, "events": result["events"],
        "next_url": url_with(request, cursor=result["next_cursor"]) if result["next_cursor"] else None,
        "first_url": url_with(request, cursor=None) if request.query_params.get("cursor") else None,
        "facets": facets.value, "facets_sampled": facets.counted if facets.approximate else None, "limit": limit, "page_sizes": PAGE_SIZES,
        "csv_url": url_with(request, "/search.csv", cursor=None, limit=None),
        "tail_url": url_with(request, "/tail", cursor=None, limit=None, **{"from": None, "to": None}),
        "facet_url": lambda f, v, neg=False: _facet_url(request, q, f, v, neg),
    }, status)


def _time_range_fallback(request: Request) -> TimeRange:
    qp = request.query_params
    return TimeRange(qp.get("from", "-24h"), qp.get("to", ""), None, None)


def _facet_url(request: Request, q: str, field: str, value: str, negate: bool) -> str:
    term = f"{'-' if negate else ''}{field}:{quote_value(str(value))}"
    new_q = f"{q} {term}".strip() if term not in q.split() else q
    return url_with(request, q=new_q, cursor=None)


# ------------------------------------------------------------------------------------ context

def _find(store: Store, pid: int, event_id: str) -> dict[str, Any] | None:
    rows = store.search(pid, SearchRequest(Field("id", "=", event_id, True), None, None, 1))
    return rows[0] if rows else None


def _around(store: Store, pid: int, anchor: dict[str, Any], node: Node, n: int) -> list[dict[str, Any]]:
    key = (anchor["ts"], anchor["id"])
    before = store.search(pid, SearchRequest(node, None, None, n, key, False))
    after = store.search(pid, SearchRequest(node, None, None, n, key, True))
    return [to_public(e) for e in [*reversed(before), anchor, *after]]


def _context(store: Store, pid: int, event_id: str, by: str, n: int) -> dict[str, Any]:
    anchor = _find(store, pid, event_id)
    if anchor is None:
        return {"anchor": None, "events": [], "why": f"no event with id {event_id!r} in this project"}
    key = {"host": "host", "request": "request_id", "session": "session_id"}[by]
    value = anchor.get(key)
    if not value:
        return {"anchor": to_public(anchor), "events": [],
                "why": f"this event has no {key}, so there is no {by} context; try another tab"}
    if by == "request":
        t = trace(store, pid, value, cap=CONTEXT_MAX * 5)
        return {"anchor": to_public(anchor), "events": t["events"], "why": None, "truncated": t["truncated"]}
    return {"anchor": to_public(anchor), "events": _around(store, pid, anchor, Field(key, "=", value, True), n),
            "why": None, "value": value}


async def context_page(request: Request, session: Session) -> Response:
    event_id = request.path_params["event_id"]
    by = request.query_params.get("by", "host")
    if by not in ("host", "request", "session"):
        by = "host"
    try:
        n = max(1, min(CONTEXT_MAX, int(request.query_params.get("n", CONTEXT_DEFAULT))))
    except ValueError:
        n = CONTEXT_DEFAULT
    store = request.app.state.hub.store
    ctx = await run_in_threadpool(_context, store, session.project_id, event_id, by, n)
    return render(request, "context.html", {"event_id": event_id, "by": by, "n": n, **ctx},
                  404 if ctx["anchor"] is None else 200)


# ---------------------------------------------------------------------------------------- CSV

async def csv_export(request: Request, session: Session) -> Response:
    """The API's export (`GET /api/v1/export`, same rows and columns) for a browser session, with
    cells a spreadsheet would run as formulas neutralised."""
    try:
        node = _parse(request.query_params.get("q", ""))
        tr = time_range(request)
        req = export_request(node, tr.start, tr.end, "csv", request.query_params.get("columns"), "1")
    except QueryError as e:
        return PlainTextResponse(f"cannot export: {e}", status_code=400)
    return await start_export(request.app.state.hub.store, session.project_id, req, request.url.path)


# ---------------------------------------------------------------------------------- live tail

async def tail_page(request: Request, session: Session) -> Response:
    q = request.query_params.get("q", "")
    error = None
    try:
        _parse(q)
    except QueryError as e:
        error = e
    return render(request, "tail.html", {"q": q, "error": error,
                                         "search_url": url_with(request, "/search")}, 400 if error else 200)


def _tail_fields(e: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "ts", "level", "kind", "host", "service", "message", "name", "request_id", "trace_id",
            "user_id", "session_id")
    out = {k: e[k] for k in keep if e.get(k) is not None}
    if e.get("error") and not out.get("message"):
        out["message"] = f"{e['error'].get('type', 'Error')}: {e['error'].get('value', '')}"
    return out


def _poll(store: Store, pid: int, node: Node | None, start: int, limit: int) -> list[dict[str, Any]]:
    rows = store.search(pid, SearchRequest(node, start, None, limit, None, False))
    return list(reversed(rows))


def _sse(event: str | None, data: Any, ident: str | None = None) -> str:
    out = f"event: {event}\n" if event else ""
    if ident:
        out += f"id: {ident}\n"
    return out + "data: " + orjson.dumps(data).decode() + "\n\n"


async def _tail(store: Store, pid: int, node: Node | None, since: int | None) -> AsyncIterator[str]:
    yield "retry: 1500\n\n"
    seen: dict[str, int] = {}
    deadline = time.monotonic() + STREAM_S
    first = True
    while time.monotonic() < deadline:
        now = time.time_ns() // 1000
        try:
            if first and since is None:
                rows = await run_in_threadpool(_poll, store, pid, node, now - 3600 * 1_000_000, BACKFILL)
            else:
                start = min(since, now - LOOKBACK_US) if first and since is not None else now - LOOKBACK_US
                rows = await run_in_threadpool(_poll, store, pid, node, start, 500)
        except StoreError as err:
            yield _sse("problem", {"message": f"store unavailable, retrying: {err}"})
            await asyncio.sleep(POLL_S * 3)
            continue
        first = False
        fresh = [e for e in rows if e["id"] not in seen]
        for e in fresh:
            seen[e["id"]] = e["ts"]
        if fresh:
            yield _sse("lines", [_tail_fields(to_public(e)) for e in fresh], str(max(e["ts"] for e in fresh)))
        else:
            yield ": idle\n\n"  # also how a closed connection is noticed (the write fails)
        cutoff = now - LOOKBACK_US - 10_000_000
        if len(seen) > 5000:
            seen = {k: v for k, v in seen.items() if v >= cutoff}
        await asyncio.sleep(POLL_S)
    yield _sse("reconnect", {"reason": "stream rotated"})


async def tail_stream(request: Request, session: Session) -> Response:
    try:
        node = _parse(request.query_params.get("q", ""))
    except QueryError as e:
        return PlainTextResponse(str(e), status_code=400)
    since_raw = request.headers.get("last-event-id") or request.query_params.get("since")
    since = int(since_raw) if since_raw and since_raw.isdigit() else None
    store = request.app.state.hub.store
    return StreamingResponse(_tail(store, session.project_id, node, since), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


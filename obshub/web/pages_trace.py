"""Trace (`/trace/<id>`) and user journey (`/users/<id>`) pages.

The trace page asks the skew estimator for the offset of each host in the trace and orders
events on corrected time unless `?time=raw`. The user page marks each request that landed on a
different host than the one before it: the seed bug ("only when a user hits two different
servers in a row") is the red marker in the host strip at the top. Its order and entry hosts are
on corrected time too (`user_timeline`), always: on raw time a 1.5 s slow host invents switches.
It shows one page of requests (the newest 50 by default; "older requests" follows the cursor),
so it renders as fast for a user with thousands of requests as for one with ten.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from obshub.clock import corrected_ts
from obshub.errors import QueryError
from obshub.events import format_ts, parse_ts
from obshub.hub import hub_of
from obshub.query.search import TIMELINE_LIMIT, TIMELINE_MAX_LIMIT, trace, user_timeline
from obshub.query.spans import span_tree
from obshub.web.common import quote_value, render, time_range, url_with
from obshub.web.session import Session
from obshub.web.trace_view import PAGE_SIZE, is_error, layout, waterfall

__all__ = ["trace_page", "user_page"]

HOST_COLORS = 8  # CSS classes host-0..host-7; hosts beyond reuse them
OTHER_SHOWN = 200  # the user's events without a request id listed on one page; the rest: a search


def _page_no(request: Request, total: int) -> int:
    try:
        p = int(request.query_params.get("page", "1"))
    except ValueError:
        p = 1
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return min(max(p, 1), pages)


async def trace_page(request: Request, session: Session) -> Response:
    hub = hub_of(request)
    tid = request.path_params["id"]
    corrected = request.query_params.get("time", "corrected") != "raw"
    try:
        tr = time_range(request, default_from="")
    except QueryError as err:
        return render(request, "message.html", {"title": "Bad time range", "message": str(err)}, 400)
    data = await run_in_threadpool(trace, hub.store, session.project_id, tid, tr.start, tr.end)
    offsets = hub.skew.offsets(session.project_id, data["hosts"])
    view = layout(data, offsets, corrected)
    # The waterfall is always on corrected time: a span's bar against its parent's only means
    # something on one clock (raw time is the list and swimlanes' toggle).
    wf = waterfall(span_tree(data["events"], offsets))
    total = len(view["events"])
    page = _page_no(request, total)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    lo = (page - 1) * PAGE_SIZE
    for e in view["events"]:
        p = e["_n"] // PAGE_SIZE + 1
        e["_href"] = ("" if p == page else url_with(request, page=p)) + f"#ev-{e['_n']}"
    return render(
        request,
        "trace.html",
        {
            "tid": tid,
            "data": data,
            "view": view,
            "wf": wf,
            "href_of": {e["id"]: e["_href"] for e in view["events"]},
            "corrected": corrected,
            "tr": tr,
            "rows": view["events"][lo : lo + PAGE_SIZE],
            "page": page,
            "pages": pages,
            "page_url": lambda p: url_with(request, page=p),
            "raw_url": url_with(request, time="raw", page=None),
            "corrected_url": url_with(request, time=None, page=None),
            "host_class": {h["host"]: f"host-{i % HOST_COLORS}" for i, h in enumerate(view["hosts"])},
        },
        200 if data["events"] else 404,
    )


def _shown_before(request: Request) -> int:
    """How many newer requests the previous pages showed (`n`, carried by the "older" link):
    only numbers this page's rows, so a bad value is ignored rather than refused."""
    try:
        return max(0, int(request.query_params.get("n", "0")))
    except ValueError:
        return 0


async def user_page(request: Request, session: Session) -> Response:
    hub = hub_of(request)
    uid = request.path_params["user_id"]
    try:
        tr = time_range(request, default_from="-7d")
    except QueryError as err:
        return render(request, "message.html", {"title": "Bad time range", "message": str(err)}, 400)
    raw_limit = request.query_params.get("limit") or str(TIMELINE_LIMIT)
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 6):  # `²` is a digit to isdigit()
        raise QueryError(f"limit: expected an integer from 1 to {TIMELINE_MAX_LIMIT}, got {raw_limit[:40]!r}")
    cursor = request.query_params.get("cursor") or None
    offsets: dict[str, int] = {}

    def offsets_of(hosts: list[str]) -> dict[str, int]:
        offsets.update(hub.skew.offsets(session.project_id, hosts))  # kept: error lines show the times the order used
        return offsets

    data = await run_in_threadpool(
        user_timeline,
        hub.store,
        session.project_id,
        uid,
        tr.start,
        tr.end,
        int(raw_limit),
        cursor,
        offsets_of=offsets_of,
    )
    errors_by_request: dict[str, list[dict[str, Any]]] = {}
    for e in data["events"]:
        if is_error(e) and e.get("request_id"):
            fixed = format_ts(corrected_ts(parse_ts(e["ts"]), e.get("host"), offsets))
            errors_by_request.setdefault(e["request_id"], []).append({**e, "_fixed": fixed})
    other = [e for e in data["events"] if not e.get("request_id")]
    hosts = list(dict.fromkeys(h for r in data["requests"] for h in r["hosts"]))
    shown = _shown_before(request) if cursor else 0
    return render(
        request,
        "user.html",
        {
            "uid": uid,
            "data": data,
            "tr": tr,
            "errors_by_request": errors_by_request,
            "other": other[:OTHER_SHOWN],
            "other_more": max(0, len(other) - OTHER_SHOWN),
            "other_url": "/search?"
            + urlencode(
                {
                    k: v
                    for k, v in (
                        ("q", f"user_id:{quote_value(uid)} -request_id:*"),
                        ("from", tr.raw_from),
                        ("to", tr.raw_to),
                    )
                    if v
                }
            ),
            "host_class": {h: f"host-{i % HOST_COLORS}" for i, h in enumerate(hosts)},
            "hosts": hosts,
            "skewed": {h: off for h, off in offsets.items() if off},
            "paged": bool(cursor or data["next_cursor"]),
            "first_no": shown + 1,
            "older_url": url_with(request, cursor=data["next_cursor"], n=shown + len(data["requests"]))
            if data["next_cursor"]
            else None,
            "newest_url": url_with(request, cursor=None, n=None) if cursor else None,
        },
        200 if data["events"] else 404,
    )

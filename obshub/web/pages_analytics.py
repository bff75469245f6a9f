"""Analytics page, Trends tab: event names with counts, an event's properties and their top
values, and events over time (hour/day buckets, total or unique users): one event as bars, or
several compared on one chart, or one broken down by a property (top N + other), with a query
filter. One URL holds the whole selection (`event` (repeatable), `property`, `interval`,
`unique`, `q`, `breakdown`, `top`, `from`, `to`); `format=csv` is the table as CSV. The other
tabs are pages_analyses.py; the series comes from the same function as the API's
(obshub/query/product.py -> analytics.event_series)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from obshub.errors import QueryError
from obshub.events import now_us
from obshub.hub import hub_of
from obshub.query import analytics
from obshub.query.product import MAX_EVENTS
from obshub.query.times import parse_time
from obshub.web.charts import bars
from obshub.web.common import render, url_with
from obshub.web.pages_analyses import csv_response, run_tab, save_fields
from obshub.web.session import Session

__all__ = ["analytics_page"]


async def _facets(request: Request, pid: int, event: str, prop: str, raw_from: str, raw_to: str) -> dict[str, Any]:
    """The names list, and the properties (and one's values) of the one selected event."""
    store = hub_of(request).store
    now = now_us()
    start = parse_time(raw_from, "from", now)
    end = parse_time(raw_to or "now", "to", now)
    assert start is not None and end is not None
    names = await run_in_threadpool(analytics.event_names, store, pid, start, end, 100)
    out: dict[str, Any] = {"names": names["events"]}
    if event:
        props = await run_in_threadpool(analytics.event_properties, store, pid, event, start, end)
        out["properties"] = props["properties"]
        if prop in out["properties"]:  # a property kept from another event's view is dropped
            found = await run_in_threadpool(analytics.property_values, store, pid, event, prop, start, end, 50)
            out["values"], out["values_sampled"] = found["values"], found["counted"] if found["approximate"] else None
    return out


async def analytics_page(request: Request, session: Session) -> Response:
    qp = request.query_params
    fmt = qp.get("format", "")
    if fmt not in ("", "html", "csv"):
        raise QueryError("format: expected csv (or nothing: the page)")
    events = [e for e in qp.getlist("event") if e.strip()]
    event = events[0] if len(events) == 1 else ""  # properties are shown for one event
    prop = qp.get("property", "")
    interval = qp.get("interval", "hour")
    unique = qp.get("unique", "0") == "1"
    raw_from, raw_to = qp.get("from", "-7d" if interval == "day" else "-24h"), qp.get("to", "")
    error = None
    data: dict[str, Any] = {"names": []}
    out: dict[str, Any] | None = None
    try:
        if interval not in ("hour", "day"):
            raise QueryError("interval: expected hour or day")
        out = await run_tab(request, session, "trends", raw_from, raw_to)
        if fmt == "csv":
            return csv_response(out["req"], out["result"], "trends")
        data = await _facets(request, session.project_id, event, prop, raw_from, raw_to)
    except QueryError as e:
        if fmt == "csv":
            return PlainTextResponse(f"cannot export: {e}", status_code=400)
        error, out = e, None
    if "values" not in data:
        prop = ""
    single = out is not None and len(out["result"]["series"]) == 1 and "breakdown" not in out["result"]["series"][0]
    return render(
        request,
        "analytics.html",
        {
            "tab": "trends",
            "events": events,
            "event": event,
            "prop": prop,
            "interval": interval,
            "unique": unique,
            "q": qp.get("q", ""),
            "breakdown": qp.get("breakdown", ""),
            "top": qp.get("top", ""),
            "raw_from": raw_from,
            "raw_to": raw_to,
            "error": error,
            "data": data,
            "max_events": MAX_EVENTS,
            # One series: bars as before; several (compared, broken down): lines.
            "chart": bars(out["result"]["series"][0]["points"]) if single and out else None,
            "link": lambda **kw: url_with(request, **kw),
            **(out or {}),
            **(await save_fields(request, session, "trends", out)),
        },
        400 if error else 200,
    )

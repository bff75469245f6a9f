"""Analytics page: event names with counts, an event's properties and their top values, and the
event over time (hour/day buckets, total or unique users) as an SVG bar chart. One URL holds the
whole selection (`event`, `property`, `interval`, `unique`, `from`, `to`)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from obshub.errors import QueryError
from obshub.events import now_us
from obshub.hub import hub_of
from obshub.query import analytics
from obshub.query.times import parse_interval, parse_time
from obshub.web.charts import bars
from obshub.web.common import render, url_with
from obshub.web.session import Session

__all__ = ["analytics_page"]


async def _load(
    request: Request, pid: int, event: str, prop: str, interval: str, unique: bool, raw_from: str, raw_to: str
) -> dict[str, Any]:
    store = hub_of(request).store
    now = now_us()
    start = parse_time(raw_from, "from", now)
    end = parse_time(raw_to or "now", "to", now)
    assert start is not None and end is not None
    names = await run_in_threadpool(analytics.event_names, store, pid, start, end, 100)
    out: dict[str, Any] = {"names": names["events"]}
    series = await run_in_threadpool(
        analytics.event_series, store, pid, event or None, parse_interval(interval), start, end, unique
    )
    out["series"] = series["points"]
    if event:
        props = await run_in_threadpool(analytics.event_properties, store, pid, event, start, end)
        out["properties"] = props["properties"]
        if prop in out["properties"]:  # a property kept from another event's view is dropped
            found = await run_in_threadpool(analytics.property_values, store, pid, event, prop, start, end, 50)
            out["values"], out["values_sampled"] = found["values"], found["counted"] if found["approximate"] else None
    return out


async def analytics_page(request: Request, session: Session) -> Response:
    qp = request.query_params
    event, prop = qp.get("event", ""), qp.get("property", "")
    interval = qp.get("interval", "hour")
    if interval not in ("hour", "day"):
        interval = "hour"
    unique = qp.get("unique", "0") == "1"
    raw_from, raw_to = qp.get("from", "-7d" if interval == "day" else "-24h"), qp.get("to", "")
    error = None
    data: dict[str, Any] = {"names": [], "series": []}
    try:
        data = await _load(request, session.project_id, event, prop, interval, unique, raw_from, raw_to)
    except QueryError as e:
        error = e
    if "values" not in data:
        prop = ""
    return render(
        request,
        "analytics.html",
        {
            "event": event,
            "prop": prop,
            "interval": interval,
            "unique": unique,
            "raw_from": raw_from,
            "raw_to": raw_to,
            "error": error,
            "data": data,
            "chart": bars(data["series"]),
            "link": lambda **kw: url_with(request, **kw),
        },
        400 if error else 200,
    )

"""Visualize (one aggregation as a chart, a table and a CSV; saved as a dashboard panel), the
Dashboards pages (a grid of panels under one shared time range, optional auto-refresh) and a
dashboard's public read-only link (docs/web.md). The dashboards themselves, their storage and
their publication are obshub/query/dashboards.py; every number comes from the same computation
as GET /api/v1/aggregate.

A public link needs no session and shows only its dashboard's panels, with the queries fixed by
the saved definition: the viewer picks the range among the presets (and the saved default),
nothing else. It costs the store at most one computation per link and range per
`PUBLIC_TTL_S` (like the status pages), and one at a time per app whatever the traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from obshub.errors import Conflict, NotFound, QueryError, StoreOverloaded, StoreUnavailable
from obshub.events import now_us
from obshub.hub import Hub, hub_of
from obshub.query import aggregate, dashboards, metrics
from obshub.query.dashboards import CHARTS, REFRESH_S, Dashboard, Panel
from obshub.web.analytics_params import tab_url
from obshub.web.analytics_view import analysis_view
from obshub.web.common import PRESETS, page, render, url_with
from obshub.web.panels import panel_view
from obshub.web.session import Session, form, require_csrf

__all__ = ["routes"]

PUBLIC_TTL_S = 30.0
_PUBLIC_CACHE_MAX = 1_000  # (link, range) entries; cleared when full: memory stays bounded
_REQUEST = ("q", "measure", "group_by", "top", "interval")


# ------------------------------------------------------------------------------------ visualize


def _params(qp: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, str]:
    return {k: qp[k] for k in keys if qp.get(k)}


def _visualize_params(qp: Mapping[str, str]) -> dict[str, str]:
    """The aggregate parameters of the Visualize form: `interval` auto unless given, and none
    when given empty (one number per group)."""
    params = {"from": aggregate.DEFAULT_FROM, **_params(qp, ("from", "to", *_REQUEST))}
    if "interval" not in qp:
        params["interval"] = "auto"
    return params


async def visualize_page(request: Request, session: Session) -> Response:
    qp = request.query_params
    chart = qp.get("chart", "line") if qp.get("chart") in CHARTS else "line"
    params = _visualize_params(qp)
    error, view = None, None
    try:
        req = aggregate.parse_request(params)
        root = await run_in_threadpool(aggregate.aggregate, hub_of(request).store, session.project_id, req)
        view = panel_view(aggregate.to_json(req, root), chart)
    except QueryError as e:
        error = e
    names = await run_in_threadpool(dashboards.list_dashboards, hub_of(request).store, session.project_id)
    return render(
        request,
        "visualize.html",
        {
            "p": params,
            "chart": chart,
            "charts": CHARTS,
            "error": error,
            "view": view,
            "csv_url": url_with(request, "/visualize.csv", chart=None),
            "api_url": "/api/v1/aggregate?" + urlencode(params),
            "dashboards": names,
        },
        400 if error else 200,
    )


async def visualize_csv(request: Request, session: Session) -> Response:
    """The CSV of GET /api/v1/aggregate?format=csv, for a browser session."""
    params = _visualize_params(request.query_params)
    try:
        req = aggregate.parse_request(params)
    except QueryError as e:
        return PlainTextResponse(f"cannot export: {e}", status_code=400)
    root = await run_in_threadpool(aggregate.aggregate, hub_of(request).store, session.project_id, req)
    return PlainTextResponse(
        aggregate.to_csv(req, root),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="aggregate.csv"', "Cache-Control": "no-store"},
    )


async def save_panel(request: Request, session: Session) -> Response:
    fields = await form(request)
    require_csrf(request, session, fields)
    panel = {
        "title": fields.get("title", "").strip() or fields.get("measure") or "count",
        "chart": fields.get("chart", "line"),
        "request": _params(fields, _REQUEST),
    }
    try:
        d = await run_in_threadpool(
            dashboards.add_panel, hub_of(request).store, session.project_id, fields.get("dashboard", ""), panel
        )
    except Conflict as e:  # the dashboard cap, or another save in the same instant: a page, not JSON
        return render(request, "message.html", {"title": "Not saved", "message": f"{e}."}, 409)
    return RedirectResponse(f"/dashboards/{d.slug}?saved={len(d.panels)}", status_code=303)


# ----------------------------------------------------------------------------------- dashboards


async def dashboards_page(request: Request, session: Session) -> Response:
    found = await run_in_threadpool(dashboards.list_dashboards, hub_of(request).store, session.project_id)
    return render(request, "dashboards.html", {"dashboards": found, "done": request.query_params.get("done")})


def _panels(hub: Hub, project_id: int, d: Dashboard, time_from: str, time_to: str, now: int) -> list[dict[str, Any]]:
    """Every panel's view (or the error it gave) over the range, in a worker thread."""
    out = []
    config = metrics.config_metrics(hub.settings.metrics)  # validated at start: cannot fail here
    for i, p in enumerate(d.panels):
        try:
            j = dashboards.panel_data(hub.store, project_id, p, time_from, time_to, now, config)
            view = analysis_view(p.request, j, p.chart) if p.source == "analytics" else panel_view(j, p.chart)
            out.append({"i": i, "panel": p, "view": view, "error": None})
        except (QueryError, NotFound) as e:  # NotFound: a metric panel's metric was deleted (or never made)
            out.append({"i": i, "panel": p, "view": None, "error": str(e)})
    return out


def _refresh(raw: str | None, default: int) -> int:
    return int(raw) if raw is not None and raw.isdigit() and int(raw) in REFRESH_S else default


async def dashboard_page(request: Request, session: Session) -> Response:
    hub = hub_of(request)
    qp = request.query_params
    d = await run_in_threadpool(dashboards.get_dashboard, hub.store, session.project_id, request.path_params["slug"])
    time_from, time_to = qp.get("from", d.time_from), qp.get("to", d.time_to if "from" not in qp else "")
    error = None
    try:
        dashboards.panel_request({}, time_from, time_to)
    except QueryError as e:
        error, time_from, time_to = e, d.time_from, d.time_to
    panels = await run_in_threadpool(_panels, hub, session.project_id, d, time_from, time_to, now_us())
    return render(
        request,
        "dashboard.html",
        {
            "d": d,
            "panels": panels,
            "time_from": time_from,
            "time_to": time_to,
            "refresh": _refresh(qp.get("refresh"), d.refresh_s),
            "refresh_choices": REFRESH_S,
            "error": error,
            "saved": qp.get("saved"),
            "public": False,
            "range_url": lambda f: url_with(request, **{"from": f, "to": None}),
            "visualize_url": lambda p: _visualize_url(p, time_from, time_to),
            "analytics_url": lambda p: tab_url(p.request, time_from, time_to),
        },
        400 if error else 200,
    )


def _visualize_url(p: Panel, time_from: str, time_to: str) -> str:
    return "/visualize?" + urlencode({**p.request, "from": time_from, "to": time_to, "chart": p.chart})


async def dashboard_action(request: Request, session: Session) -> Response:
    fields = await form(request)
    require_csrf(request, session, fields)
    store, pid, slug = hub_of(request).store, session.project_id, request.path_params["slug"]
    action = fields.get("action", "")
    if action == "delete-panel":
        raw = fields.get("panel", "")
        if not raw.isdigit():
            raise QueryError("panel: expected a panel number")
        await run_in_threadpool(dashboards.remove_panel, store, pid, slug, int(raw))
        return RedirectResponse(f"/dashboards/{slug}", status_code=303)
    if action == "delete":
        await run_in_threadpool(dashboards.delete_dashboard, store, pid, slug)
        return RedirectResponse(f"/dashboards?done=deleted+{slug}", status_code=303)
    if action == "defaults":
        d = await run_in_threadpool(dashboards.get_dashboard, store, pid, slug)
        doc = d.to_json()
        doc["time"] = {"from": fields.get("from", ""), "to": fields.get("to", "")}
        doc["refresh_s"] = _refresh(fields.get("refresh"), 0)
        await run_in_threadpool(dashboards.put_dashboard, store, pid, doc)
        return RedirectResponse(f"/dashboards/{slug}", status_code=303)
    if action == "publish":
        token = await run_in_threadpool(dashboards.publish, store, pid, slug)
        d = await run_in_threadpool(dashboards.get_dashboard, store, pid, slug)
        link = f"{str(request.base_url).rstrip('/')}/public/dashboards/{token}"
        return render(request, "published.html", {"d": d, "link": link})
    if action == "revoke":
        await run_in_threadpool(dashboards.revoke, store, pid, slug)
        return RedirectResponse(f"/dashboards/{slug}", status_code=303)
    raise QueryError(f"action: unknown {action[:40]!r}")


# --------------------------------------------------------------------------------- public link


@dataclass
class _PublicCache:
    pages: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _public_cache(request: Request) -> _PublicCache:
    state = request.app.state
    if not hasattr(state, "public_dashboards"):
        state.public_dashboards = _PublicCache()
    cache: _PublicCache = state.public_dashboards
    return cache


def _public_data(hub: Hub, token: str, raw_from: str | None) -> dict[str, Any] | None:
    found = dashboards.find_public(hub.store, token)
    if found is None:
        return None
    pid, d = found
    if raw_from is None or raw_from == d.time_from:
        time_from, time_to = d.time_from, d.time_to
    elif raw_from in PRESETS:
        time_from, time_to = raw_from, ""
    else:
        return {"d": d, "bad_range": True}
    return {
        "d": d,
        "panels": _panels(hub, pid, d, time_from, time_to, now_us()),
        "time_from": time_from,
        "time_to": time_to,
        "bad_range": False,
    }


def _not_found(request: Request) -> Response:
    return render(request, "message.html", {"title": "Not found", "message": "There is no such dashboard."}, 404)


async def public_dashboard(request: Request) -> Response:
    token = request.path_params["token"]
    raw_from = request.query_params.get("from")
    cache = _public_cache(request)
    key = (token, raw_from or "")
    hit = cache.pages.get(key)
    if hit is None or hit[0] < time.monotonic():
        async with cache.lock:  # one computation at a time, whatever the traffic
            hit = cache.pages.get(key)
            if hit is None or hit[0] < time.monotonic():
                try:
                    data = await run_in_threadpool(_public_data, hub_of(request), token, raw_from)
                except (StoreUnavailable, StoreOverloaded) as e:
                    out = render(
                        request,
                        "message.html",
                        {"title": "Dashboard unavailable", "message": "It cannot be read now; try again shortly."},
                        503,
                    )
                    out.headers["Retry-After"] = str(e.retry_after)
                    return out
                hit = (time.monotonic() + PUBLIC_TTL_S, data)
                # Only a live link's valid range is kept: random tokens or `from` values sent by
                # anybody would otherwise fill the cache and flush the real links' pages.
                if data is not None and not data["bad_range"]:
                    if len(cache.pages) >= _PUBLIC_CACHE_MAX:
                        cache.pages.clear()
                    cache.pages[key] = hit
    data = hit[1]
    if data is None:
        return _not_found(request)
    d: Dashboard = data["d"]
    if data["bad_range"]:
        return render(
            request,
            "message.html",
            {"title": "Cannot show that", "message": f"from: expected one of {', '.join(PRESETS)}"},
            400,
        )
    response = render(
        request,
        "dashboard.html",
        {
            **data,
            "refresh": d.refresh_s,
            "public": True,
            "presets": [d.time_from, *(p for p in PRESETS if p != d.time_from)],
            "range_url": lambda f: "?" + urlencode({"from": f}),
        },
    )
    response.headers["X-Robots-Tag"] = "noindex"
    return response


routes = [
    Route("/visualize", page(visualize_page)),
    Route("/visualize.csv", page(visualize_csv)),
    Route("/visualize/save", page(save_panel), methods=["POST"]),
    Route("/dashboards", page(dashboards_page)),
    Route("/dashboards/{slug}", page(dashboard_page)),
    Route("/dashboards/{slug}/action", page(dashboard_action), methods=["POST"]),
    Route("/public/dashboards/{token}", public_dashboard),
]

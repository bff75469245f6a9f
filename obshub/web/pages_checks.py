"""The Checks page (`/checks`, a web session like every page) and the public status pages
(`/status/<project>`, no token) of uptime checks (docs/uptime.md). Their data comes from
obshub/uptime/overview.py; this module draws it.

A status page is open to anyone, so it is opt-in twice (the project in the `status_pages`
setting, the check with `public = true`), shows only names, states and uptime (never a target
or a failure message: they may name internal hosts), and is computed at most once per
`STATUS_TTL_S` per project, whatever the traffic: the store sees one status read per project
and 30 s, not one per visitor.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from obshub.errors import StoreOverloaded, StoreUnavailable
from obshub.events import now_us, parse_ts
from obshub.hub import Hub, hub_of
from obshub.uptime.config import config_checks
from obshub.uptime.overview import CHART_BUCKET_US, checks_page, status_page
from obshub.web.charts import latency_line
from obshub.web.common import page, render, url_with
from obshub.web.session import Session

__all__ = ["routes"]

STATUS_TTL_S = 30.0


@dataclass
class _StatusCache:
    """One app's status pages: project name -> (expires, page data), and one lock per name so
    that visitors arriving while it is computed wait for that one computation."""

    pages: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


def _status_cache(request: Request) -> _StatusCache:
    """Kept in the app's state (one per app: tests run several); only touched on the event loop."""
    state = request.app.state
    if not hasattr(state, "status_cache"):
        state.status_cache = _StatusCache()
    cache: _StatusCache = state.status_cache
    return cache


def _chart(check: dict[str, Any], start_us: int, span_us: int) -> dict[str, Any]:
    points = [
        ((parse_ts(p["t"]) - start_us) / span_us, p["latency_ms"], p["up"] < p["results"]) for p in check["chart"]
    ]
    return latency_line(points, CHART_BUCKET_US / span_us)


async def checks_list(request: Request, session: Session) -> Response:
    hub = hub_of(request)
    raw = request.query_params.get("page", "1")
    number = int(raw) if raw.isdigit() else 1
    store = hub.store
    proj = await run_in_threadpool(store.get_project_by_id, session.project_id)
    if proj is None:
        return render(request, "message.html", {"title": "Not found", "message": "This project is gone."}, 404)
    now = now_us()
    data = await run_in_threadpool(checks_page, store, proj, config_checks(hub.settings.checks), now, number)
    start, end = parse_ts(data["chart_start"]), now
    for c in data["checks"]:
        c["line"] = _chart(c, start, max(end - start, 1))
    return render(
        request,
        "checks.html",
        {
            **data,
            "status_page": proj.name in hub.settings.status_page_projects,
            "page_url": lambda n: url_with(request, page=n),
        },
    )


async def status(request: Request) -> Response:
    hub = hub_of(request)
    name = request.path_params["project"]
    if name not in hub.settings.status_page_projects:  # decided before any store read
        return render(request, "message.html", {"title": "Not found", "message": "There is no such status page."}, 404)
    cache = _status_cache(request)
    lock = cache.locks.setdefault(name, asyncio.Lock())  # names: only those of the setting
    async with lock:
        cached = cache.pages.get(name)
        if cached is None or cached[0] < time.monotonic():
            try:
                data = await run_in_threadpool(_status_data, hub, name)
            except (StoreUnavailable, StoreOverloaded) as e:
                response = render(
                    request,
                    "message.html",
                    {"title": "Status unavailable", "message": "The status cannot be read now; try again shortly."},
                    503,
                )
                response.headers["Retry-After"] = str(e.retry_after)
                return response
            cached = cache.pages[name] = (time.monotonic() + STATUS_TTL_S, data)
    data = cached[1]
    if not data:
        return render(request, "message.html", {"title": "Not found", "message": "There is no such status page."}, 404)
    return render(request, "status.html", data)


def _status_data(hub: Hub, name: str) -> dict[str, Any]:
    """The page's data; {} when the project does not exist (a 404, cached like a page)."""
    project = hub.store.get_project(name)
    if project is None:
        return {}
    return status_page(hub.store, project, config_checks(hub.settings.checks), now_us())


routes = [
    Route("/checks", page(checks_list)),
    Route("/status/{project}", status),
]

"""`/api/v1/dashboards` (docs/api.md, "Dashboards"; docs/web.md): a project's dashboards as JSON
documents, for config as code: export one (GET), import one (POST: create, or replace the
dashboard of that slug), list, delete. A read token, like the web UI that builds them: a panel
only reads the project's own data. Publishing a public link is done in the web UI only (its
token is shown once, to a person)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from obshub.errors import QueryError
from obshub.hub import hub_of
from obshub.query import dashboards

__all__ = ["routes"]


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise QueryError("body: not valid JSON") from None


async def api_dashboards(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    if request.method == "POST":
        body = await _body(request)
        d, created = await run_in_threadpool(dashboards.put_dashboard, hub.store, project.id, body)
        return JSONResponse(d.to_json(), status_code=201 if created else 200)
    found = await run_in_threadpool(dashboards.list_dashboards, hub.store, project.id)
    return JSONResponse(
        {"dashboards": [{"slug": d.slug, "title": d.title, "panels": len(d.panels), "public": d.public} for d in found]}
    )


async def api_dashboard(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    slug = request.path_params["slug"]
    if request.method == "DELETE":
        await run_in_threadpool(dashboards.delete_dashboard, hub.store, project.id, slug)
        return JSONResponse({"deleted": slug})
    d = await run_in_threadpool(dashboards.get_dashboard, hub.store, project.id, slug)
    return JSONResponse(d.to_json())


routes: list[BaseRoute] = [
    Route("/api/v1/dashboards", api_dashboards, methods=["GET", "POST"]),
    Route("/api/v1/dashboards/{slug}", api_dashboard, methods=["GET", "DELETE"]),
]

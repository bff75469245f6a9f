"""`/api/v1/metrics` (docs/api.md, "Metrics"; docs/metrics.md): metrics defined from queries,
their rollup progress and current values, API metrics created and deleted, and their stored
hourly and daily series (JSON or CSV).

A read token for every route, POST and DELETE included, like the alert rules: a metric only
reads the project's own events, so the people who read the project may define what is counted
of it; its cost is bounded (MAX_API_METRICS per project, a few aggregations of an hour or a day
each per rollup run). Config-file metrics are read-only here."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from obshub.errors import QueryError
from obshub.events import now_us
from obshub.hub import hub_of
from obshub.query import metrics
from obshub.query.metrics import MetricDef

__all__ = ["routes"]


def _config(request: Request) -> list[MetricDef]:
    return metrics.config_metrics(hub_of(request).settings.metrics)  # validated at start: cannot fail here


async def api_metrics(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    config = _config(request)
    if request.method == "POST":
        try:
            body: Any = await request.json()
        except ValueError:
            raise QueryError("body: not valid JSON") from None
        m, created = await run_in_threadpool(metrics.define_metric, hub.store, project, config, body)
        out = await run_in_threadpool(metrics.status, hub.store, project, config, now_us())
        return JSONResponse(next(x for x in out if x["name"] == m.name), status_code=201 if created else 200)
    return JSONResponse({"metrics": await run_in_threadpool(metrics.status, hub.store, project, config, now_us())})


async def api_metric(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    name = request.path_params["name"]
    await run_in_threadpool(metrics.delete_metric, hub.store, project, _config(request), name)
    return JSONResponse({"deleted": name})


async def api_metric_series(request: Request) -> Response:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    req = metrics.parse_series(dict(request.query_params))
    m = await run_in_threadpool(metrics.find, hub.store, project, _config(request), request.path_params["name"])
    rows = await run_in_threadpool(
        hub.store.rollup_series, project.id, m.name, req.interval, req.start, req.end, req.group
    )
    if req.format == "csv":
        return Response(
            metrics.series_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{m.name}-{req.interval}.csv"'},
        )
    return JSONResponse(metrics.series_json(m, req, rows))


routes: list[BaseRoute] = [
    Route("/api/v1/metrics", api_metrics, methods=["GET", "POST"]),
    Route("/api/v1/metrics/{name}", api_metric, methods=["DELETE"]),
    Route("/api/v1/metrics/{name}/series", api_metric_series),
]

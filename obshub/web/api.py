"""JSON query API (read tokens): search, trace, user timeline, analytics. Thin: parse arguments,
call `obshub.query` in a worker thread (stores are blocking), return the contract's JSON."""

from __future__ import annotations

import functools
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from obshub.errors import QueryError
from obshub.events import now_us
from obshub.hub import Hub, hub_of
from obshub.query import aggregate, analytics, errors, export, funnels, paths
from obshub.query.search import TIMELINE_LIMIT, parse_query, search, trace, user_timeline
from obshub.query.spans import span_tree
from obshub.query.times import parse_interval, parse_time
from obshub.uptime.queries import list_checks
from obshub.uptime.writes import Rules, define_check, delete_check
from obshub.web import convertors  # noqa: F401  (registers `anypath`)
from obshub.web.export import start_export

__all__ = ["routes"]


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise QueryError(f"{name}: expected an integer, got {raw!r}") from None


def _range(request: Request, default_from: str | None = None) -> tuple[int | None, int | None]:
    """`from` and `to` in µs; an absent `from` is `default_from` (an empty one: no bound)."""
    now = now_us()
    start = parse_time(request.query_params.get("from", default_from), "from", now)
    end = parse_time(request.query_params.get("to"), "to", now)
    if start is not None and end is not None and end <= start:
        raise QueryError("to: must be after from")
    return start, end


async def _project(request: Request) -> int:
    hub = hub_of(request)
    return (await hub.authenticate(request, "read")).id


async def api_search(request: Request) -> JSONResponse:
    pid = await _project(request)
    q = parse_query(request.query_params.get("q"))
    start, end = _range(request)
    limit = _int(request, "limit", 100)
    cursor = request.query_params.get("cursor")
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise QueryError("order: expected asc or desc")
    store = hub_of(request).store
    return JSONResponse(await run_in_threadpool(search, store, pid, q, start, end, limit, cursor, order == "asc"))


async def api_export(request: Request) -> Response:
    """Every match, oldest first, streamed as CSV or NDJSON (obshub/query/export.py)."""
    pid = await _project(request)
    qp = request.query_params
    q = parse_query(qp.get("q"))
    start, end = _range(request)
    req = export.export_request(q, start, end, qp.get("format"), qp.get("columns"), qp.get("spreadsheet"))
    return await start_export(export.chunks(hub_of(request).store, pid, req), req, request.url.path)


async def api_trace(request: Request) -> JSONResponse:
    pid = await _project(request)
    start, end = _range(request)
    hub = hub_of(request)
    out = await run_in_threadpool(trace, hub.store, pid, request.path_params["id"], start, end)
    offsets = hub.skew.offsets(pid, out["hosts"])
    out["skew_ms"] = {h: off // 1000 for h, off in offsets.items()}
    out["spans"] = span_tree(out["events"], offsets)
    return JSONResponse(out)


async def api_timeline(request: Request) -> JSONResponse:
    pid = await _project(request)
    start, end = _range(request)
    limit = _int(request, "limit", TIMELINE_LIMIT)
    hub = hub_of(request)
    return JSONResponse(
        await run_in_threadpool(
            user_timeline,
            hub.store,
            pid,
            request.path_params["user_id"],
            start,
            end,
            limit,
            request.query_params.get("cursor"),
            offsets_of=functools.partial(hub.skew.offsets, pid),
        )
    )


async def api_event_names(request: Request) -> JSONResponse:
    pid = await _project(request)
    start, end = _range(request)
    limit = _int(request, "limit", 100)
    return JSONResponse(await run_in_threadpool(analytics.event_names, hub_of(request).store, pid, start, end, limit))


async def api_properties(request: Request) -> JSONResponse:
    pid = await _project(request)
    start, end = _range(request)
    return JSONResponse(
        await run_in_threadpool(
            analytics.event_properties, hub_of(request).store, pid, request.query_params.get("event"), start, end
        )
    )


async def api_values(request: Request) -> JSONResponse:
    pid = await _project(request)
    start, end = _range(request)
    qp = request.query_params
    limit = _int(request, "limit", 100)
    return JSONResponse(
        await run_in_threadpool(
            analytics.property_values,
            hub_of(request).store,
            pid,
            qp.get("event"),
            qp.get("property"),
            start,
            end,
            limit,
        )
    )


async def api_series(request: Request) -> JSONResponse:
    pid = await _project(request)
    qp = request.query_params
    now = now_us()
    interval = parse_interval(qp.get("interval"))
    start = parse_time(qp.get("from") or "-7d", "from", now)
    end = parse_time(qp.get("to") or "now", "to", now)
    unique = qp.get("unique", "0")
    if unique not in ("0", "1"):
        raise QueryError("unique: expected 0 or 1")
    assert start is not None and end is not None
    q = parse_query(qp.get("q"))
    out: dict[str, Any] = await run_in_threadpool(
        analytics.event_series,
        hub_of(request).store,
        pid,
        qp.get("event"),
        interval,
        start,
        end,
        unique == "1",
        q,
        qp.get("breakdown") or None,
        _int(request, "top", 5),
    )
    return JSONResponse(out)


async def api_errors(request: Request) -> JSONResponse:
    pid = await _project(request)
    start, end = _range(request, errors.DEFAULT_FROM)
    q = parse_query(request.query_params.get("q"))
    state = request.query_params.get("state") or None
    limit = _int(request, "limit", 200)
    return JSONResponse(
        await run_in_threadpool(errors.list_groups, hub_of(request).store, pid, state, q, start, end, limit)
    )


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise QueryError("body: not valid JSON") from None


async def api_error(request: Request) -> JSONResponse:
    pid = await _project(request)
    store = hub_of(request).store
    gid = request.path_params["id"]
    if request.method == "PATCH":
        body = await _json_body(request)
        return JSONResponse(await run_in_threadpool(errors.set_state, store, pid, gid, body))
    return JSONResponse(await run_in_threadpool(errors.get_group, store, pid, gid))


async def api_error_merge(request: Request) -> JSONResponse:
    pid = await _project(request)
    body = await _json_body(request)
    return JSONResponse(
        await run_in_threadpool(errors.merge_groups, hub_of(request).store, pid, request.path_params["id"], body)
    )


async def api_aggregate(request: Request) -> Response:
    """A measure by group and time bucket (docs/aggregate.md): query string or JSON body."""
    pid = await _project(request)
    params: dict[str, Any]
    if request.method == "POST":
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise QueryError("body: expected a JSON object")
        params = body
    else:
        qp = request.query_params
        params = dict(qp)
        if len(qp.getlist("group_by")) > 1:
            params["group_by"] = qp.getlist("group_by")
    fmt = aggregate.check_format(params.get("format"))
    req = aggregate.parse_request(params)
    root = await run_in_threadpool(aggregate.aggregate, hub_of(request).store, pid, req)
    if fmt == "csv":
        return PlainTextResponse(aggregate.to_csv(req, root), media_type="text/csv; charset=utf-8")
    return JSONResponse(aggregate.to_json(req, root))


async def _analysis(request: Request, run: Any) -> JSONResponse:
    """Funnel, retention, experiment (obshub/query/funnels.py): a JSON body, the read token."""
    pid = await _project(request)
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise QueryError("body: expected a JSON object")
    return JSONResponse(await run_in_threadpool(run, hub_of(request).store, pid, body, now_us()))


def _funnel(store: Any, pid: int, body: dict[str, Any], now: int) -> dict[str, Any]:
    return funnels.funnel(store, pid, funnels.parse_funnel(body, now))


async def api_funnel(request: Request) -> JSONResponse:
    return await _analysis(request, _funnel)


async def api_retention(request: Request) -> JSONResponse:
    return await _analysis(request, funnels.retention)


async def api_experiment(request: Request) -> JSONResponse:
    return await _analysis(request, funnels.experiment)


async def api_paths(request: Request) -> JSONResponse:
    return await _analysis(request, paths.paths)


# -- uptime checks (docs/uptime.md). GET takes a read token; POST/DELETE an admin token: a check
# makes the hub connect somewhere, which no credential that many people hold may decide (read
# tokens log in to the web UI, ingest tokens live on every monitored host).


async def api_checks(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "admin" if request.method == "POST" else "read")
    rules = Rules.of(hub.settings)
    now = now_us()
    if request.method == "POST":
        body = await _json_body(request)
        out, created = await run_in_threadpool(define_check, hub.store, project, body, rules, now, hub.scrubber)
        _checks_changed(hub)
        return JSONResponse(out, status_code=201 if created else 200)
    return JSONResponse(await run_in_threadpool(list_checks, hub.store, project, rules.config, now))


async def api_check_delete(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "admin")
    out = await run_in_threadpool(
        delete_check, hub.store, project, request.path_params["name"], Rules.of(hub.settings), now_us(), hub.scrubber
    )
    _checks_changed(hub)
    return JSONResponse(out)


def _checks_changed(hub: Hub) -> None:
    """This hub probes a new or changed check at its next tick; other replicas re-read the
    definitions within uptime.scheduling.DEFS_TTL_S."""
    if hub.uptime is not None:
        hub.uptime.invalidate()


routes: list[BaseRoute] = [
    Route("/api/v1/errors", api_errors),
    Route("/api/v1/errors/{id}", api_error, methods=["GET", "PATCH"]),
    Route("/api/v1/errors/{id}/merge", api_error_merge, methods=["POST"]),
    Route("/api/v1/search", api_search),
    Route("/api/v1/export", api_export),
    Route("/api/v1/trace/{id:anypath}", api_trace),
    Route("/api/v1/users/{user_id:anypath}/timeline", api_timeline),
    Route("/api/v1/analytics/events", api_event_names),
    Route("/api/v1/analytics/properties", api_properties),
    Route("/api/v1/analytics/values", api_values),
    Route("/api/v1/analytics/series", api_series),
    Route("/api/v1/analytics/funnel", api_funnel, methods=["POST"]),
    Route("/api/v1/analytics/retention", api_retention, methods=["POST"]),
    Route("/api/v1/analytics/experiment", api_experiment, methods=["POST"]),
    Route("/api/v1/analytics/paths", api_paths, methods=["POST"]),
    Route("/api/v1/aggregate", api_aggregate, methods=["GET", "POST"]),
    Route("/api/v1/checks", api_checks, methods=["GET", "POST"]),
    Route("/api/v1/checks/{name}", api_check_delete, methods=["DELETE"]),
]

"""The Analytics page's Funnels, Retention and Experiments tabs, every tab's CSV (`format=csv`
on the tab's URL) and "Save to dashboard" (docs/analytics.md, "Web"). Each tab is a GET form:
its URL holds the whole analysis (obshub/web/analytics_params.py), which runs through the same
function as the API (obshub/query/product.py -> obshub/query/funnels.py).

An event name the project has never recorded is an error (400, naming the field: a typo), not
an empty funnel; the range may still hold none of it (an empty answer, said so).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from obshub.errors import Conflict, QueryError
from obshub.events import now_us
from obshub.hub import hub_of
from obshub.query import analytics, dashboards, product
from obshub.query.funnels import MAX_STEPS
from obshub.query.times import parse_time
from obshub.web.analytics_params import TABS, from_query, step_events
from obshub.web.analytics_view import analysis_view
from obshub.web.common import page, render, url_with
from obshub.web.session import Session, form, require_csrf

__all__ = ["csv_response", "routes", "run_tab", "save_fields"]

_CHART = {"series": "line", "funnel": "bar", "retention": "line", "experiment": "bar"}
# Fields whose presence says the form was submitted: a first visit shows the form, no error.
_SUBMITTED = {"funnel": (), "experiment": ("variant",), "retention": ("start", "return", "period", "periods")}


def _submitted(analysis: str, qp: QueryParams) -> bool:
    steps = analysis in ("funnel", "experiment") and any(k[:1] in ("e", "q") and k[1:].isdigit() for k in qp)
    return steps or any(k in qp for k in _SUBMITTED[analysis])


async def run_tab(request: Request, session: Session, tab: str, raw_from: str, raw_to: str) -> dict[str, Any]:
    """Parse the tab's URL, check its events exist, run it: {"req", "result", "view"}."""
    req = from_query(tab, request.query_params)
    store = hub_of(request).store
    fields = step_events(req)
    unknown = await run_in_threadpool(product.unknown_events, store, session.project_id, [n for _, n in fields])
    if unknown:
        field = next(f for f, n in fields if n == unknown[0])
        raise QueryError(f"{field}: no event named {unknown[0]!r} in this project (names are case-sensitive)")
    result = await run_in_threadpool(product.run, store, session.project_id, req, raw_from, raw_to, now_us())
    return {"req": req, "result": result, "view": analysis_view(req, result, _CHART[req["analysis"]])}


def csv_response(req: dict[str, Any], result: dict[str, Any], tab: str) -> Response:
    return PlainTextResponse(
        product.to_csv(product.table(req, result)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="analytics-{tab}.csv"', "Cache-Control": "no-store"},
    )


def _format(request: Request) -> str:
    fmt = request.query_params.get("format", "")
    if fmt not in ("", "html", "csv"):
        raise QueryError("format: expected csv (or nothing: the page)")
    return fmt


async def _names(request: Request, session: Session, raw_from: str, raw_to: str) -> list[str]:
    """Event names for the form's suggestions (the range's 100 most frequent; a bad range: none)."""
    now = now_us()
    try:
        start, end = parse_time(raw_from, "from", now), parse_time(raw_to or "now", "to", now)
    except QueryError:
        return []
    found = await run_in_threadpool(analytics.event_names, hub_of(request).store, session.project_id, start, end, 100)
    return [n["name"] for n in found["events"]]


def _steps_shown(qp: QueryParams) -> list[dict[str, str]]:
    """The step rows of the form: every filled one, then one empty (to add a step), 3 at least."""
    filled = []
    for n in range(1, MAX_STEPS + 1):
        e, q = qp.get(f"e{n}", "").strip(), qp.get(f"q{n}", "").strip()
        if e or q:
            filled.append({"event": e, "q": q})
    rows = filled + [{"event": "", "q": ""}] * max(3 - len(filled), 1)
    return rows[:MAX_STEPS]


def _tab_page(tab: str) -> Callable[[Request, Session], Awaitable[Response]]:
    analysis = TABS[tab]

    async def handler(request: Request, session: Session) -> Response:
        fmt = _format(request)
        qp = request.query_params
        raw_from, raw_to = qp.get("from", product.DEFAULT_FROM[analysis]), qp.get("to", "")
        submitted = _submitted(analysis, qp)
        error, out = None, None
        if submitted or fmt == "csv":
            try:
                out = await run_tab(request, session, tab, raw_from, raw_to)
            except QueryError as e:
                error = e
        if fmt == "csv":
            if out is None:
                return PlainTextResponse(f"cannot export: {error}", status_code=400)
            return csv_response(out["req"], out["result"], tab)
        ctx = {
            "tab": tab,
            "qp": qp,
            "raw_from": raw_from,
            "raw_to": raw_to,
            "error": error,
            "names": await _names(request, session, raw_from, raw_to),
            "steps": _steps_shown(qp),
            "max_steps": MAX_STEPS,
            **(out or {}),
            **(await save_fields(request, session, tab, out)),
        }
        return render(request, f"analytics_{tab}.html", ctx, 400 if error else 200)

    return handler


async def save_fields(request: Request, session: Session, tab: str, out: dict[str, Any] | None) -> dict[str, Any]:
    """The CSV link and the "save to dashboard" form's state (this URL's query) for the template."""
    if out is None:
        return {}
    names = await run_in_threadpool(dashboards.list_dashboards, hub_of(request).store, session.project_id)
    return {
        "csv_url": url_with(request, format="csv"),
        "state": request.url.query,
        "save_tab": tab,
        "dashboards": names,
    }


async def save_analysis(request: Request, session: Session) -> Response:
    """Append the tab's analysis (its URL state, without the range) to a dashboard as a panel."""
    fields = await form(request)
    require_csrf(request, session, fields)
    tab = fields.get("tab", "")
    if tab not in TABS:
        raise QueryError(f"tab: expected one of {', '.join(TABS)}")
    state = QueryParams(fields.get("state", ""))
    req = from_query(tab, state)
    panel = {
        "title": fields.get("title", "").strip() or tab,
        "chart": fields.get("chart") or _CHART[req["analysis"]],
        "source": "analytics",
        "request": req,
    }
    try:
        d = await run_in_threadpool(
            dashboards.add_panel,
            hub_of(request).store,
            session.project_id,
            fields.get("dashboard", ""),
            panel,
            state.get("from") or product.DEFAULT_FROM[req["analysis"]],  # a new dashboard's range: the tab's
        )
    except Conflict as e:
        return render(request, "message.html", {"title": "Not saved", "message": f"{e}."}, 409)
    return RedirectResponse(f"/dashboards/{d.slug}?saved={len(d.panels)}", status_code=303)


routes = [
    Route("/analytics/funnels", page(_tab_page("funnels"))),
    Route("/analytics/retention", page(_tab_page("retention"))),
    Route("/analytics/experiments", page(_tab_page("experiments"))),
    Route("/analytics/save", page(save_analysis), methods=["POST"]),
]

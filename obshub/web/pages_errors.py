"""Error groups: the list (state filter, query, counts, users, last seen, 24 h sparkline) and the
group page (stack with in-app frames emphasised, tags, occurrences over time, the requests it
happened in, resolve / ignore / unresolve / merge as CSRF-protected POST forms).

Sparklines, the group's chart and its tags come from obshub/query/errors.py (`sparks`,
`activity`); this module only draws them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from obshub.errors import NotFound, QueryError
from obshub.events import now_us, parse_ts
from obshub.hub import hub_of
from obshub.query import errors as groups
from obshub.query.errors import GROUP_STATES
from obshub.query.search import parse_query
from obshub.query.times import parse_time
from obshub.web.charts import bars, sparkline
from obshub.web.common import page, render, time_range, url_with
from obshub.web.session import Session, form, require_csrf

__all__ = ["routes"]


async def errors_page(request: Request, session: Session) -> Response:
    qp = request.query_params
    state = qp.get("state", "unresolved")
    q = qp.get("q", "")
    error = None
    data: dict[str, Any] = {"groups": []}
    tr = None
    store = hub_of(request).store
    try:
        tr = time_range(request, default_from=groups.DEFAULT_FROM)
        data = await run_in_threadpool(
            groups.list_groups,
            store,
            session.project_id,
            state if state in GROUP_STATES else None,
            parse_query(q),
            tr.start,
            tr.end,
        )
        spark = await run_in_threadpool(groups.sparks, store, session.project_id, data["groups"], now_us())
        for g in data["groups"]:
            g["spark"] = sparkline(spark[g["id"]])
            g["spark_total"] = sum(spark[g["id"]])
    except QueryError as e:
        error = e
    return render(
        request,
        "errors.html",
        {
            "groups": data["groups"],
            "state": state,
            "q": q,
            "error": error,
            "states": GROUP_STATES,
            "raw_from": qp.get("from", groups.DEFAULT_FROM),
            "raw_to": qp.get("to", ""),
            "state_url": lambda s: url_with(request, state=s),
        },
        400 if error else 200,
    )


async def group_page(request: Request, session: Session) -> Response:
    gid = request.path_params["id"]
    store, pid = hub_of(request).store, session.project_id
    try:
        g = await run_in_threadpool(groups.get_group, store, pid, gid)
    except NotFound:
        return render(
            request,
            "message.html",
            {"title": "No such error group", "message": f"There is no error group {gid!r} in this project."},
            404,
        )
    now = now_us()
    since = parse_time(groups.DEFAULT_FROM, "from", now)  # merge candidates: groups seen in the list's default range
    seen, listed = await asyncio.gather(
        run_in_threadpool(groups.activity, store, pid, g, now),
        run_in_threadpool(groups.list_groups, store, pid, None, None, since, None),
    )
    g["chart"] = bars(seen["points"], height=160)
    g["chart_hours"] = seen["hours"]
    g["tags"] = seen["tags"]
    g["merge_candidates"] = [o for o in listed["groups"] if o["id"] != g["id"]][:50]
    ev = g.get("latest_event") or {}
    stack = (ev.get("error") or {}).get("stack")
    frames = list(reversed(stack)) if isinstance(stack, list) else []  # innermost (where it broke) first
    return render(
        request,
        "error.html",
        {
            "g": g,
            "ev": ev,
            "frames": frames,
            "stack_text": stack if isinstance(stack, str) else None,
            "notice": request.query_params.get("done"),
            "parse_ts": parse_ts,
        },
    )


async def group_action(request: Request, session: Session) -> Response:
    gid = request.path_params["id"]
    fields = await form(request)
    require_csrf(request, session, fields)
    store = hub_of(request).store
    action = fields.get("action", "")
    try:
        if action in GROUP_STATES:
            await run_in_threadpool(groups.set_state, store, session.project_id, gid, {"state": action})
        elif action == "merge" and fields.get("other"):
            await run_in_threadpool(groups.merge_groups, store, session.project_id, gid, {"groups": [fields["other"]]})
        else:
            return render(request, "message.html", {"title": "Unknown action", "message": f"{action!r}"}, 400)
    except NotFound as e:
        return render(request, "message.html", {"title": "Not found", "message": str(e)}, 404)
    except QueryError as e:
        return render(request, "message.html", {"title": "Cannot do that", "message": str(e)}, 400)
    return RedirectResponse(f"/errors/{gid}?done={action}", status_code=303)


routes = [
    Route("/errors", page(errors_page)),
    Route("/errors/{id}", page(group_page)),
    Route("/errors/{id}/action", page(group_action), methods=["POST"]),
]

"""Error groups: the list (state filter, query, counts, users, last seen, 24 h sparkline) and the
group page (stack with in-app frames emphasised, tags, occurrences over time, the requests it
happened in, resolve / ignore / unresolve / merge as CSRF-protected POST forms).

Sparklines come from one query: the past 24 h's error occurrences counted per group and hour
by the store (a covering index on SQLite), instead of one query per group. They used to read the
newest 5,000 occurrences (older ones fell off) through a walk of every event of the day: ~380 ms
at 5M events.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from obshub.errors import NotFound, QueryError
from obshub.events import format_ts, parse_ts
from obshub.query.times import parse_time
from obshub.query import errors as groups
from obshub.query.search import parse_query
from obshub.store.base import GROUP_STATES, SearchRequest, Store
from obshub.store.querylang import Field, Or
from obshub.web.charts import bars, sparkline
from obshub.web.common import page, render, time_range, url_with
from obshub.web.session import Session, form, require_csrf

__all__ = ["routes"]

HOUR_US = 3_600_000_000
SPARK_HOURS = 24
OCCURRENCE_CAP = 1_000  # occurrences bucketed for the group page's chart


def _hourly(ts_list: list[int], now: int, hours: int) -> list[int]:
    counts = [0] * hours
    first = now - hours * HOUR_US
    for t in ts_list:
        i = (t - first) // HOUR_US
        if 0 <= i < hours:
            counts[int(i)] += 1
    return counts


def _sparks(store: Store, pid: int, now: int) -> dict[str, list[int]]:
    """Per group: occurrences in each of the last 24 clock hours, the current one last."""
    first = now - now % HOUR_US - (SPARK_HOURS - 1) * HOUR_US
    out = {}
    for gid, buckets in store.group_series(pid, first, now + 1, HOUR_US).items():
        counts = [0] * SPARK_HOURS
        for t, n in buckets:
            counts[(t - first) // HOUR_US] += n
        out[gid] = counts
    return out


def _list(store: Store, pid: int, state: str | None, q: str, start: int | None, end: int | None) -> dict[str, Any]:
    node = parse_query(q)
    out = groups.list_groups(store, pid, state, node, start, end)
    now = time.time_ns() // 1000
    sparks = _sparks(store, pid, now)
    for g in out["groups"]:
        counts = [sum(c) for c in zip(*(sparks.get(m, [0] * SPARK_HOURS) for m in [g["id"], *g["merged"]]))]
        g["spark"] = sparkline(counts)
        g["spark_total"] = sum(counts)
    return out


async def errors_page(request: Request, session: Session) -> Response:
    qp = request.query_params
    state = qp.get("state", "unresolved")
    q = qp.get("q", "")
    error = None
    data: dict[str, Any] = {"groups": []}
    tr = None
    try:
        tr = time_range(request, default_from=groups.DEFAULT_FROM)
        data = await run_in_threadpool(_list, request.app.state.hub.store, session.project_id,
                                       state if state in GROUP_STATES else None, q, tr.start, tr.end)
    except QueryError as e:
        error = e
    return render(request, "errors.html", {
        "groups": data["groups"], "state": state, "q": q, "error": error, "states": GROUP_STATES,
        "raw_from": qp.get("from", groups.DEFAULT_FROM), "raw_to": qp.get("to", ""),
        "state_url": lambda s: url_with(request, state=s),
    }, 400 if error else 200)


def _group(store: Store, pid: int, gid: str) -> dict[str, Any]:
    g = groups.get_group(store, pid, gid)
    members = [g["id"], *g["merged"]]
    node = Or(tuple(Field("group_id", "=", m, True) for m in members)) if len(members) > 1 \
        else Field("group_id", "=", members[0], True)
    rows = store.search(pid, SearchRequest(node, None, None, OCCURRENCE_CAP))
    now = time.time_ns() // 1000
    span_h = 24 if not rows or now - rows[-1]["ts"] <= 24 * HOUR_US else 24 * 7
    counts = _hourly([e["ts"] for e in rows], now, span_h)
    first = now - span_h * HOUR_US
    g["chart"] = bars([{"t": format_ts(first + i * HOUR_US), "count": c} for i, c in enumerate(counts)],
                      height=160)
    g["chart_hours"] = span_h
    tags: dict[str, Counter[str]] = {k: Counter() for k in ("host", "service", "release", "env", "user_id")}
    for e in rows:
        for k in tags:
            if e.get(k):
                tags[k][e[k]] += 1
    g["tags"] = {k: c.most_common(5) for k, c in tags.items() if c}
    since = parse_time(groups.DEFAULT_FROM, "from", now)  # candidates: groups seen in the list's default range
    others = [o for o in groups.list_groups(store, pid, None, None, since, None)["groups"] if o["id"] != g["id"]]
    g["merge_candidates"] = others[:50]
    return g


async def group_page(request: Request, session: Session) -> Response:
    gid = request.path_params["id"]
    try:
        g = await run_in_threadpool(_group, request.app.state.hub.store, session.project_id, gid)
    except NotFound:
        return render(request, "message.html", {"title": "No such error group",
                                                "message": f"There is no error group {gid!r} in this project."}, 404)
    ev = g.get("latest_event") or {}
    stack = (ev.get("error") or {}).get("stack")
    frames = list(reversed(stack)) if isinstance(stack, list) else []  # innermost (where it broke) first
    return render(request, "error.html", {"g": g, "ev": ev, "frames": frames,
                                          "stack_text": stack if isinstance(stack, str) else None,
                                          "notice": request.query_params.get("done"),
                                          "parse_ts": parse_ts})


async def group_action(request: Request, session: Session) -> Response:
    gid = request.path_params["id"]
    fields = await form(request)
    require_csrf(request, session, fields)
    store = request.app.state.hub.store
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

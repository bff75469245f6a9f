"""`/api/v1/alerts` (docs/api.md, "Alerts"; docs/alerting.md): alert rules with their state, API
rules created and deleted, mutes. A read token, like the checks' GET: a rule only reads the
project's own data and sends to the notifiers the operator configured, so the people who read
the project may decide what they are alerted about. Config-file rules are read-only here."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from obshub.alerts import catalog
from obshub.alerts.notify.published import read_status
from obshub.alerts.rules import Rule, config_rules, notifier_names, parse_duration
from obshub.errors import FieldError, QueryError
from obshub.events import now_us
from obshub.hub import hub_of
from obshub.query.times import parse_time

__all__ = ["parse_mute", "routes"]

MAX_MUTE_S = 365 * 86_400


def _config(request: Request) -> list[Rule]:
    return config_rules(hub_of(request).settings.alerts)  # validated at start: cannot fail here


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise QueryError("body: not valid JSON") from None


def parse_mute(body: Any, now: int) -> int:
    """{"for": "2h"} or {"until": "<RFC 3339 or epoch>"} -> until (µs). QueryError naming the field."""
    if not isinstance(body, dict) or len(body) != 1 or not ({"for", "until"} & set(body)):
        raise QueryError('body: expected {"for": "2h"} or {"until": "2030-01-01T00:00:00Z"}')
    try:
        if "for" in body:
            return now + int(parse_duration(body["for"], "for", 1, MAX_MUTE_S) * 1_000_000)
    except FieldError as e:
        raise QueryError(str(e)) from None
    raw = body["until"]
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise QueryError("until: expected an RFC 3339 time or an epoch number")
    until = parse_time(str(raw), "until", now)
    if until is None or not now < until <= now + MAX_MUTE_S * 1_000_000:
        raise QueryError("until: must be in the future, within a year")
    return until


async def api_alerts(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    config = _config(request)
    if request.method == "POST":
        body = await _body(request)
        names = notifier_names(hub.settings.notifiers)
        rule, created = await run_in_threadpool(catalog.define_rule, hub.store, project, config, body, names)
        out = await run_in_threadpool(catalog.status, hub.store, project, config, now_us(), rule.name)
        return JSONResponse(out[0], status_code=201 if created else 200)
    rules = await run_in_threadpool(catalog.status, hub.store, project, config, now_us())
    delivery = await run_in_threadpool(read_status, hub.store)
    return JSONResponse({"alerts": rules, "delivery": delivery})


async def api_alert(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    name = request.path_params["name"]
    config = _config(request)
    if request.method == "DELETE":
        await run_in_threadpool(catalog.delete_rule, hub.store, project, config, name)
        return JSONResponse({"deleted": name})
    out = await run_in_threadpool(catalog.status, hub.store, project, config, now_us(), name)
    return JSONResponse(out[0])


async def api_alert_mute(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    name = request.path_params["name"]
    config = _config(request)
    now = now_us()
    until = parse_mute(await _body(request), now) if request.url.path.endswith("/mute") else None
    rule = await run_in_threadpool(catalog.find_rule, hub.store, project, config, name)
    await run_in_threadpool(catalog.set_mute, hub.store, project, rule, until)
    out = await run_in_threadpool(catalog.status, hub.store, project, config, now, name)
    return JSONResponse(out[0])


async def api_alert_history(request: Request) -> JSONResponse:
    hub = hub_of(request)
    project = await hub.authenticate(request, "read")
    name = request.path_params["name"]
    await run_in_threadpool(catalog.find_rule, hub.store, project, _config(request), name)
    states = await run_in_threadpool(catalog.instance_states, hub.store, project.id, name)
    return JSONResponse({"name": name, "history": catalog.history(states)})


routes: list[BaseRoute] = [
    Route("/api/v1/alerts", api_alerts, methods=["GET", "POST"]),
    Route("/api/v1/alerts/{name}", api_alert, methods=["GET", "DELETE"]),
    Route("/api/v1/alerts/{name}/mute", api_alert_mute, methods=["POST"]),
    Route("/api/v1/alerts/{name}/unmute", api_alert_mute, methods=["POST"]),
    Route("/api/v1/alerts/{name}/history", api_alert_history),
]

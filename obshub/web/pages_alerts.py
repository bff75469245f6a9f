"""The Alerts page (docs/alerting.md, "Alerts page"): every rule with its state (ok, pending,
firing, muted), last evaluation and value, the last alert handed to delivery; a rule's page with
its instances, definition and state changes; mute and unmute as CSRF-protected POST forms, the
same as the API's (obshub/alerts/catalog.py)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from obshub.alerts import catalog
from obshub.alerts.notify.published import read_status
from obshub.alerts.rules import config_rules
from obshub.errors import NotFound, QueryError
from obshub.events import now_us
from obshub.hub import hub_of
from obshub.web.api_alerts import parse_mute
from obshub.web.common import page, render
from obshub.web.session import Session, form, require_csrf

__all__ = ["routes"]

MUTE_CHOICES = (("1h", "1 hour"), ("4h", "4 hours"), ("1d", "1 day"), ("7d", "1 week"))


def _last_alert(rule: dict[str, Any]) -> str | None:
    """The newest time an instance fired or resolved: when the engine last handed a new alert
    or a resolution to delivery (the dispatcher's own status is its part)."""
    times = [t for i in rule["instances"] for t in (i["fired_at"], i["resolved_at"]) if t]
    return max(times) if times else None


async def alerts_page(request: Request, session: Session) -> Response:
    hub = hub_of(request)
    project = await hub.check_token_hash(session.token_hash, "read")
    rules = await run_in_threadpool(catalog.status, hub.store, project, config_rules(hub.settings.alerts), now_us())
    for r in rules:
        r["last_alert"] = _last_alert(r)
    delivery = await run_in_threadpool(read_status, hub.store)
    return render(request, "alerts.html", {"rules": rules, "mute_choices": MUTE_CHOICES, "delivery": delivery})


async def alert_page(request: Request, session: Session) -> Response:
    hub = hub_of(request)
    name = request.path_params["name"]
    project = await hub.check_token_hash(session.token_hash, "read")
    try:
        rule = (
            await run_in_threadpool(
                catalog.status, hub.store, project, config_rules(hub.settings.alerts), now_us(), name
            )
        )[0]
    except NotFound:
        return render(
            request,
            "message.html",
            {"title": "No such alert rule", "message": f"There is no alert rule {name!r} in this project."},
            404,
        )
    states = await run_in_threadpool(catalog.instance_states, hub.store, project.id, name)
    rule["last_alert"] = _last_alert(rule)
    return render(
        request,
        "alert.html",
        {
            "r": rule,
            "history": catalog.history(states),
            "mute_choices": MUTE_CHOICES,
            "notice": request.query_params.get("done"),
        },
    )


async def alert_action(request: Request, session: Session) -> Response:
    hub = hub_of(request)
    name = request.path_params["name"]
    fields = await form(request)
    require_csrf(request, session, fields)
    project = await hub.check_token_hash(session.token_hash, "read")
    action = fields.get("action", "")
    try:
        rule = await run_in_threadpool(catalog.find_rule, hub.store, project, config_rules(hub.settings.alerts), name)
        if action == "mute":
            until = parse_mute({"for": fields.get("for", "")}, now_us())
            await run_in_threadpool(catalog.set_mute, hub.store, project, rule, until)
        elif action == "unmute":
            await run_in_threadpool(catalog.set_mute, hub.store, project, rule, None)
        else:
            return render(request, "message.html", {"title": "Unknown action", "message": f"{action!r}"}, 400)
    except NotFound as e:
        return render(request, "message.html", {"title": "Not found", "message": str(e)}, 404)
    except QueryError as e:
        return render(request, "message.html", {"title": "Cannot do that", "message": str(e)}, 400)
    back = "/alerts" if fields.get("back") == "list" else f"/alerts/{name}?done={action}d"
    return RedirectResponse(back, status_code=303)


routes = [
    Route("/alerts", page(alerts_page)),
    Route("/alerts/{name}", page(alert_page)),
    Route("/alerts/{name}/action", page(alert_action), methods=["POST"]),
]

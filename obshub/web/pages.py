"""Routes of the web trace explorer, mounted by `obshub/app.py` after the API routes.

/                      -> /search
/login  /logout        read token <-> signed session cookie (web/session.py)
/search  /search.csv   query bar, facets, expandable rows; CSV export     (pages_search.py)
/context/<event id>    the lines around one event: same host, request or session
/tail  /tail/stream    live tail page and its Server-Sent Events stream
/trace/<id>            swimlanes per host/service on one time axis        (pages_trace.py)
/users/<id>            the user's requests in order, host switches marked
/errors  /errors/<id>  error groups, resolve/ignore                         (pages_errors.py)
/analytics             Trends: event names, properties, values, series     (pages_analytics.py)
/analytics/funnels|retention|experiments  the other tabs; /analytics/save  (pages_analyses.py)
/alerts  /alerts/<name> alert rules, state, history, mute/unmute             (pages_alerts.py)
/checks                uptime checks: state, response time, uptime, 90 days (pages_checks.py)
/status/<project>      a project's public status page, no login           (pages_checks.py)
/visualize  /dashboards/<slug>  aggregations as charts, dashboards of them (pages_dashboards.py)
/public/dashboards/<token>  a published dashboard, read-only, no login
/static/...            hand-written CSS/JS/SVG, no CDN: the UI works offline
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from obshub.errors import StoreOverloaded, StoreUnavailable
from obshub.web import (
    convertors,  # noqa: F401  (registers `anypath`)
    pages_alerts,
    pages_analyses,
    pages_analytics,
    pages_checks,
    pages_dashboards,
    pages_errors,
    pages_search,
    pages_trace,
)
from obshub.web.common import HERE, page, render
from obshub.web.session import (
    CsrfError,
    LoginRequired,
    current,
    form,
    login,
    login_attempt,
    logout,
    same_origin,
    web_state,
)
from obshub.web.throttle import Verdict

__all__ = ["routes"]

log = structlog.get_logger("obshub")


def _safe_next(value: str | None) -> str:
    """Only same-site paths: `next=https://evil.example` or `//evil` must not redirect away."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/search"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/search"


async def index(request: Request) -> Response:
    return RedirectResponse("/search", status_code=307)


def _login_throttled(request: Request, nxt: str, verdict: Verdict) -> Response:
    wait = math.ceil(verdict.wait_s)
    if verdict.first_refusal:  # one line per block, not one per refused attempt
        log.warning(
            "login throttled",
            client=request.client.host if request.client else "",
            failures=verdict.failures,
            wait_s=wait,
        )
    message = (
        f"Too many failed logins from your address ({verdict.failures} in a row). "
        f"Try again in {wait} second{'s' if wait != 1 else ''}."
    )
    response = render(request, "login.html", {"next": nxt, "error": message}, 429)
    response.headers["Retry-After"] = str(wait)
    return response


def _cross_origin(request: Request, what: str) -> str:
    return f"cross-origin {what} refused: open this hub at {web_state(request).public}"


def _store_down(request: Request, nxt: str, e: StoreUnavailable | StoreOverloaded) -> Response:
    message = f"The store is not answering ({e}): try again in a few seconds."
    response = render(request, "login.html", {"next": nxt, "error": message}, 503)
    response.headers["Retry-After"] = str(e.retry_after)
    return response


async def login_page(request: Request) -> Response:
    nxt = _safe_next(request.query_params.get("next"))
    try:
        return await _login_page(request, nxt)
    except (StoreUnavailable, StoreOverloaded) as e:  # the form again, saying why (not the API's JSON)
        return _store_down(request, nxt, e)


async def _login_page(request: Request, nxt: str) -> Response:
    if request.method == "GET":
        try:
            await current(request)
            return RedirectResponse(nxt, status_code=303)
        except LoginRequired:
            return render(request, "login.html", {"next": nxt, "error": None})
    if not same_origin(request):
        return render(request, "login.html", {"next": nxt, "error": _cross_origin(request, "login")}, 403)
    try:
        fields = await form(request)
    except CsrfError as e:
        return render(request, "login.html", {"next": nxt, "error": str(e)}, 400)
    nxt = _safe_next(fields.get("next") or nxt)
    verdict = login_attempt(request)  # counted before the token is checked (web/throttle.py)
    if verdict.wait_s > 0:
        return _login_throttled(request, nxt, verdict)
    response = RedirectResponse(nxt, status_code=303)
    if not await login(request, fields.get("token", ""), response):
        return render(request, "login.html", {"next": nxt, "error": "That is not a read token of any project."}, 401)
    return response


async def logout_page(request: Request) -> Response:
    if not same_origin(request):
        return render(
            request, "message.html", {"title": "Request refused", "message": _cross_origin(request, "logout")}, 403
        )
    response = RedirectResponse("/login", status_code=303)
    try:
        await logout(request, response)
    except (StoreUnavailable, StoreOverloaded) as e:
        # The session cannot be recorded as ended: keep the cookie and say so, rather than
        # pretend (a copy of the cookie would still work).
        out = render(
            request,
            "message.html",
            {"title": "Not logged out", "message": f"{e}. The store is not answering; try again in a few seconds."},
            503,
        )
        out.headers["Retry-After"] = str(e.retry_after)
        return out
    return response


routes: list[BaseRoute] = [
    Route("/", index),
    Route("/login", login_page, methods=["GET", "POST"]),
    Route("/logout", logout_page, methods=["POST"]),
    Route("/search", page(pages_search.search_page)),
    Route("/search.csv", page(pages_search.csv_export)),
    Route("/context/{event_id:path}", page(pages_search.context_page)),
    Route("/tail", page(pages_search.tail_page)),
    Route("/tail/stream", page(pages_search.tail_stream)),
    Route("/trace/{id:anypath}", page(pages_trace.trace_page)),
    Route("/users/{user_id:anypath}", page(pages_trace.user_page)),
    Route("/analytics", page(pages_analytics.analytics_page)),
    *pages_analyses.routes,
    *pages_errors.routes,
    *pages_alerts.routes,
    *pages_checks.routes,
    *pages_dashboards.routes,
    Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
]

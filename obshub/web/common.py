"""What every page shares: the Jinja2 environment and its filters, the `page` wrapper (session
check, login redirect, errors the user can fix shown in the page instead of a JSON body), and
the time-range form every view carries in its URL.

Pages are plain server-rendered HTML: every state (query, range, cursor, toggles, page number)
lives in the query string, so any view can be bookmarked or pasted into an incident channel.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from obshub.errors import NotFound, QueryError, StoreOverloaded, StoreUnavailable
from obshub.events import now_us
from obshub.query.times import parse_time
from obshub.web.session import CsrfError, LoginRequired, Session, current

__all__ = ["TimeRange", "chip", "page", "quote_value", "render", "templates", "time_range", "url_with"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
PRESETS = ("-15m", "-1h", "-6h", "-24h", "-7d", "-30d")
DEFAULT_FROM = "-24h"

Handler = Callable[[Request, Session], Awaitable[Response]]


@dataclass(frozen=True)
class TimeRange:
    """The range as typed (kept in links) and as µs (sent to the store)."""

    raw_from: str
    raw_to: str
    start: int | None
    end: int | None


def time_range(request: Request, default_from: str = DEFAULT_FROM) -> TimeRange:
    qp = request.query_params
    raw_from = qp.get("from", default_from)
    raw_to = qp.get("to", "")
    now = now_us()
    start = parse_time(raw_from, "from", now)
    end = parse_time(raw_to, "to", now)
    if start is not None and end is not None and end <= start:
        raise QueryError("to: must be after from")
    return TimeRange(raw_from, raw_to, start, end)


def _this_path(request: Request) -> str:
    """This page's path as a link must write it. `request.url.path` is decoded (only `?` and `#`
    put back): on `/trace/a%2520b` (id `a%20b`) it is `/trace/a%20b`, a link to trace `a b`."""
    return quote(request.scope["path"])


def url_with(request: Request, path: str | None = None, **changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None or v == "":
            params.pop(k, None)
        else:
            params[k] = str(v)
    base = path if path is not None else _this_path(request)
    return base + ("?" + urlencode(params) if params else "")


# Same-origin scripts only (no inline JS); inline styles are allowed for bar widths.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages show private data; never cache them in shared proxies
}


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a page: require a session, and turn errors into a page that says what to do."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await _run(handler, request)
        except (StoreUnavailable, StoreOverloaded) as e:
            # A page, not the API's JSON: say what happened and that a reload will retry.
            response = render(
                request,
                "message.html",
                {
                    "title": "The store is not answering",
                    "message": f"{e}. The hub keeps trying; reload this page in a few seconds.",
                },
                503,
            )
            response.headers["Retry-After"] = str(e.retry_after)
            return response

    return wrapped


async def _run(handler: Handler, request: Request) -> Response:
    try:
        session = await current(request)
    except LoginRequired:
        nxt = _this_path(request) + ("?" + request.url.query if request.url.query else "")
        if request.method != "GET" or request.headers.get("accept", "").startswith("text/event-stream"):
            return PlainTextResponse("login required", status_code=401)
        return RedirectResponse("/login?" + urlencode({"next": nxt}), status_code=303)
    request.state.session = session
    try:
        return await handler(request, session)
    except CsrfError as e:
        return render(request, "message.html", {"title": "Request refused", "message": str(e)}, 403)
    except QueryError as e:
        return render(request, "message.html", {"title": "Cannot show that", "message": str(e)}, 400)
    except NotFound as e:
        return render(request, "message.html", {"title": "Not found", "message": str(e) or "not found"}, 404)


# ---------------------------------------------------------------------------------- filters


def _short_ts(value: str | None) -> str:
    """`2026-11-23T19:36:58.123456Z` -> `2026-11-23 19:36:58.123` (UTC, ms: what people scan)."""
    if not value:
        return ""
    return value[:10] + " " + value[11:23]


def _clock(value: str | None) -> str:
    return value[11:23] if value else ""


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def quote_value(value: str) -> str:
    """A value as it must appear in the query language (quoted when it has spaces/specials)."""
    if value and all(c.isalnum() or c in "-_.@/:" for c in value) and value not in ("AND", "OR", "NOT"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


PIVOTS = {
    "request_id": "/trace/{}",
    "trace_id": "/trace/{}",
    "user_id": "/users/{}",
}


def chip(field: str, value: Any) -> Markup:
    """An id as a link to the view that follows it: a trace, a user journey, or a search."""
    v = str(value)
    if field in PIVOTS:
        href = PIVOTS[field].format(quote(v, safe=""))
    else:
        href = "/search?" + urlencode({"q": f"{field}:{quote_value(v)}"})
    return Markup(
        '<a class="chip chip-{f}" href="{h}" title="{f}: {v}"><span class="chip-k">{f}</span> {v}</a>'
    ).format(f=field, h=href, v=v)


def _skew(us: int) -> str:
    if not us:
        return "±0 s (in sync)"
    return f"{'+' if us > 0 else '−'}{abs(us) / 1_000_000:.3f} s"


templates.env.filters.update(short_ts=_short_ts, clock=_clock, pretty=_pretty, q=quote_value, skew=_skew)
templates.env.globals.update(chip=chip, PRESETS=PRESETS, escape=escape)

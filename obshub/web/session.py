"""Web login: a read token becomes a signed, HttpOnly, SameSite=Lax session cookie.

The cookie carries the SHA-256 of the token (never the token), a per-session CSRF secret and the
login time, signed with `settings.secret_key` (itsdangerous, HMAC-SHA1 over the payload plus a
timestamp). Every page checks the hash as the API checks a bearer token (`Hub.check_token_hash`:
the hub's token cache, then `auth.authorize`), so revoking a token ends its web sessions within
`token_cache_s` too, and a page load with a cached token costs no store query.
With an empty `secret_key` each hub process draws a random key at first use: sessions then do
not survive a restart and do not work across replicas behind a load balancer - set
OBSHUB_SECRET_KEY for those (docs/web.md).

CSRF: state-changing requests (POST) must carry the session's CSRF token in a form field or the
`X-CSRF-Token` header, compared with `hmac.compare_digest`; a cross-site `Origin` is refused
first. SameSite=Lax already keeps the cookie off cross-site POSTs in current browsers; the token
covers older ones and same-site subdomains.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from obshub.auth import AuthError, hash_token
from obshub.hub import hub_of

__all__ = ["COOKIE", "CsrfError", "LoginRequired", "Session", "current", "form", "login", "logout", "require_csrf"]

COOKIE = "obshub_session"
MAX_AGE_S = 12 * 3600  # a working day: long enough for an incident, short for a lost laptop
MAX_FORM_BYTES = 64 * 1024  # login/resolve forms are tiny; refuse anything larger


class LoginRequired(Exception):
    """No valid session; pages redirect to /login?next=..."""


class CsrfError(Exception):
    """A state-changing request without this session's CSRF token, or from another origin."""


@dataclass(frozen=True)
class Session:
    project_id: int
    project_name: str
    csrf: str
    token_hash: str


def _serializer(request: Request) -> URLSafeTimedSerializer:
    state = request.app.state
    key = getattr(state, "web_secret", None)
    if key is None:
        key = hub_of(request).settings.secret_key or secrets.token_urlsafe(32)
        state.web_secret = key
    return URLSafeTimedSerializer(key, salt="obshub.web.session")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


async def login(request: Request, token: str, response: Response) -> bool:
    """Check a read token; on success set the cookie on `response` and return True."""
    try:
        await hub_of(request).check_token(token.strip(), "read")
    except AuthError:
        return False
    value = _serializer(request).dumps(
        {"h": hash_token(token.strip()), "c": secrets.token_urlsafe(24), "t": int(time.time())}
    )
    response.set_cookie(
        COOKIE, value, max_age=MAX_AGE_S, path="/", httponly=True, samesite="lax", secure=_secure(request)
    )
    return True


def logout(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


async def current(request: Request) -> Session:
    """The session of this request, or LoginRequired."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        raise LoginRequired()
    try:
        data = _serializer(request).loads(raw, max_age=MAX_AGE_S)
        h, csrf = str(data["h"]), str(data["c"])
    except (BadSignature, KeyError, TypeError):
        raise LoginRequired() from None
    try:
        project = await hub_of(request).check_token_hash(h, "read")
    except AuthError:
        raise LoginRequired() from None
    return Session(project_id=project.id, project_name=project.name, csrf=csrf, token_hash=h)


async def form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as a flat dict (first value wins). Parsed here
    so the hub needs no python-multipart for two small forms."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise CsrfError("form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None  # "null" comes from sandboxed/opaque contexts: refuse
    o = urlsplit(origin)
    return o.netloc == request.headers.get("host", request.url.netloc)


def require_csrf(request: Request, session: Session, fields: dict[str, Any]) -> None:
    if not same_origin(request):
        raise CsrfError("cross-origin request refused")
    sent = str(fields.get("csrf") or request.headers.get("x-csrf-token") or "")
    if not sent or not hmac.compare_digest(sent, session.csrf):
        raise CsrfError("missing or wrong CSRF token: reload the page and try again")

"""Web login: a read token becomes a signed, HttpOnly, SameSite=Lax session cookie.

The cookie carries the SHA-256 of the token (never the token), a random session id, a
per-session CSRF secret and the login time, signed (itsdangerous, HMAC-SHA1 over the payload
plus a timestamp) with `settings.secret_key`, or when that is empty with a key made once and
kept in the store (`Store.shared_secret`), so every replica on the store accepts the cookie and
a restart keeps it valid. A per-process random key did neither.

Every page checks the hash as the API checks a bearer token (`Hub.check_token_hash`: the hub's
token cache, then `auth.authorize`), so revoking a token ends its web sessions within
`token_cache_s` too, and a page load with a cached token costs no store query. /logout ends the
session in the store (`Store.end_session`): the hub that served the logout refuses the cookie at
once, every other replica within `token_cache_s` (the same cache rule as a revoked token), so a
copied cookie is worth nothing after its owner logs out. Ending one session leaves the other
sessions of the same token alone: a read token is often shared by a team.

Failed logins are throttled per client (web/throttle.py).

CSRF: state-changing requests (POST) must carry the session's CSRF token in a form field or the
`X-CSRF-Token` header, compared with `hmac.compare_digest`; a cross-site `Origin` is refused
first (web/origin.py). SameSite=Lax already keeps the cookie off cross-site POSTs in current
browsers; the token covers older ones and same-site subdomains.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from obshub.auth import AuthError, hash_token
from obshub.errors import StoreOverloaded, StoreUnavailable
from obshub.hub import hub_of
from obshub.settings import Settings
from obshub.web.origin import public_origin
from obshub.web.origin import same_origin as _same_origin
from obshub.web.throttle import LoginThrottle, Verdict, client_key

__all__ = [
    "COOKIE",
    "CsrfError",
    "LoginRequired",
    "Session",
    "WebState",
    "current",
    "form",
    "login",
    "login_attempt",
    "logout",
    "require_csrf",
    "same_origin",
    "web_state",
]

COOKIE = "obshub_session"
MAX_AGE_S = 12 * 3600  # a working day: long enough for an incident, short for a lost laptop
MAX_FORM_BYTES = 64 * 1024  # login/resolve forms are tiny; refuse anything larger
SECRET_NAME = "web_session"  # the store's shared secret that signs cookies (Store.shared_secret)
_MAX_REMEMBERED = 10_000  # session ids whose ended/not-ended answer is cached (~1 MB)


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
    session_id: str


class EndedSessions:
    """session id -> ended?, remembered for `ttl_s` (`token_cache_s`) like a token lookup, so a
    page load costs no store query while the answer is fresh. Used on the event loop only."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl = ttl_s
        self._items: dict[str, tuple[float, bool]] = {}

    def peek(self, session_id: str) -> bool | None:
        hit = self._items.get(session_id)
        return hit[1] if hit is not None and time.monotonic() - hit[0] < self.ttl else None

    def remember(self, session_id: str, ended: bool) -> None:
        if len(self._items) >= _MAX_REMEMBERED:  # bound memory against cookie floods
            self._items.clear()
        self._items[session_id] = (time.monotonic(), ended)


@dataclass
class WebState:
    """What the web UI keeps per app (`app.state.web`, reached as `web_state(request)`)."""

    settings: Settings
    key: str = ""  # signs cookies: `secret_key`, or the store's shared one (app.py's lifespan)
    ended: EndedSessions = field(init=False)
    logins: LoginThrottle = field(init=False)
    public: str = field(init=False)  # the origin of public_url (web/origin.py)

    def __post_init__(self) -> None:
        self.ended = EndedSessions(self.settings.token_cache_s)
        self.logins = LoginThrottle(self.settings.login_max_failures, self.settings.login_backoff_s)
        self.public = public_origin(self.settings)

    def serializer(self) -> URLSafeTimedSerializer:
        if not self.key:  # set by the lifespan before the first request is served
            raise RuntimeError("the web session key is not set: the app's lifespan did not run")
        return URLSafeTimedSerializer(self.key, salt="obshub.web.session")


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def same_origin(request: Request) -> bool:
    return _same_origin(request, web_state(request).public)


def login_attempt(request: Request) -> Verdict:
    """The throttle's verdict on a login from this request's client (web/throttle.py)."""
    return web_state(request).logins.attempt(
        client_key(request.client.host if request.client else None), time.monotonic()
    )


async def login(request: Request, token: str, response: Response) -> bool:
    """Check a read token; on success set the cookie on `response` and return True. Call after
    `login_attempt` allowed the attempt: a success clears the client's failures, a store that
    does not answer (StoreUnavailable/StoreOverloaded, raised) uncounts the attempt."""
    web = web_state(request)
    client = client_key(request.client.host if request.client else None)
    try:
        await hub_of(request).check_token(token.strip(), "read")
    except AuthError:
        return False
    except (StoreUnavailable, StoreOverloaded):
        web.logins.forgive(client)
        raise
    web.logins.succeeded(client)
    value = web.serializer().dumps(
        {
            "h": hash_token(token.strip()),
            "s": secrets.token_urlsafe(18),
            "c": secrets.token_urlsafe(24),
            "t": int(time.time()),
        }
    )
    response.set_cookie(
        COOKIE, value, max_age=MAX_AGE_S, path="/", httponly=True, samesite="lax", secure=_secure(request)
    )
    return True


def _cookie(request: Request) -> dict[str, Any] | None:
    """The signed payload of this request's session cookie, if it is valid and not expired."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = web_state(request).serializer().loads(raw, max_age=MAX_AGE_S)
    except BadSignature:
        return None
    # A cookie from before session ids (or not ours) has no "s": it cannot be ended, so it ends now.
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("h", "c", "s")):
        return None
    return data


async def logout(request: Request, response: Response) -> None:
    """End this request's session in the store (StoreUnavailable if it cannot be recorded: then
    the cookie stays, and the page says to try again) and delete the cookie."""
    data = _cookie(request)
    if data is not None:
        sid = str(data["s"])
        expires_at = (int(data.get("t", time.time())) + MAX_AGE_S) * 1_000_000
        hub = hub_of(request)
        await hub.offload(hub.store.end_session, sid, expires_at)
        web_state(request).ended.remember(sid, True)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


async def current(request: Request) -> Session:
    """The session of this request, or LoginRequired."""
    data = _cookie(request)
    if data is None:
        raise LoginRequired()
    h, csrf, sid = str(data["h"]), str(data["c"]), str(data["s"])
    hub = hub_of(request)
    try:
        project = await hub.check_token_hash(h, "read")
    except AuthError:
        raise LoginRequired() from None
    ended = web_state(request).ended
    is_ended = ended.peek(sid)
    if is_ended is None:
        is_ended = await hub.offload(hub.store.session_ended, sid)
        ended.remember(sid, is_ended)
    if is_ended:
        raise LoginRequired()
    return Session(project_id=project.id, project_name=project.name, csrf=csrf, token_hash=h, session_id=sid)


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


def require_csrf(request: Request, session: Session, fields: dict[str, Any]) -> None:
    if not same_origin(request):
        raise CsrfError("cross-origin request refused")
    sent = str(fields.get("csrf") or request.headers.get("x-csrf-token") or "")
    if not sent or not hmac.compare_digest(sent, session.csrf):
        raise CsrfError("missing or wrong CSRF token: reload the page and try again")

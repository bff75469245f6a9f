"""Which Host a request may name, and which Origin a browser form may come from.

The hub builds no URL from a request's Host header: its links and its own redirects are
relative paths, DSNs use `public_url`. What Starlette builds from `request.url` (the trailing-slash
redirect of a route, `/static` -> `/static/`) would use it, so `TrustedHost` sees to it that
`request.url` names a trusted host: the host of `public_url` (by default the bound address,
`http://127.0.0.1:8480`) or a loopback name (127.0.0.1, localhost, [::1]) at the hub's port. A
request naming any other Host is served as if it named `public_url` (scheme and host), rather
than refused: agents, SDKs and Prometheus often reach a hub by an internal name (`hub:8480` in
compose), and refusing them would break ingest for nothing, since they hold tokens, not
cookies. So a poisoned Host can make the hub redirect only to itself.

Browser forms (login, logout, triage) must come from the hub's own origin (`same_origin`): the
origin of `public_url`, or the trusted Host the request names. A page reached through another
name (a DNS name pointing at the hub, the hub's LAN address without `public_url` set) shows,
but its forms are refused: set `public_url` to the address people use (docs/security.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from obshub.settings import Settings

__all__ = ["TrustedHost", "public_origin", "same_origin", "trusted_hosts"]

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_DEFAULT_PORT = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _normal(netloc: str, scheme: str) -> str:
    """`Host:` as compared: lower case, without the scheme's default port."""
    host = netloc.strip().lower()
    port = _DEFAULT_PORT.get(scheme)
    return host.removesuffix(f":{port}") if port and host.endswith(f":{port}") else host


def public_origin(settings: Settings) -> str:
    """`scheme://host[:port]` of `public_url` (default: the bound address)."""
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc.lower()}"


def trusted_hosts(settings: Settings) -> frozenset[str]:
    parts = urlsplit(settings.base_url)
    loopback = {_normal(f"{name}:{settings.port}", "http") for name in LOOPBACK}
    return frozenset({_normal(parts.netloc, parts.scheme), *loopback})


class TrustedHost:
    """ASGI middleware: a request whose Host is not trusted gets `public_url`'s scheme and host
    in its scope, so nothing the app derives from `request.url` points elsewhere."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.trusted = trusted_hosts(settings)
        parts = urlsplit(settings.base_url)
        self.scheme = parts.scheme
        self.host = parts.netloc.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = [v for k, v in scope["headers"] if k == b"host"]
            scheme = str(scope.get("scheme", "http"))
            if len(hosts) != 1 or _normal(hosts[0].decode("latin-1"), scheme) not in self.trusted:
                headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
                scope = {**scope, "scheme": self.scheme, "headers": [(b"host", self.host), *headers]}
        await self.app(scope, receive, send)


def same_origin(request: Request, public: str) -> bool:
    """A browser request from the hub's own pages: no `Origin` (a same-origin GET, or an older
    browser), or the origin of `public_url`, or the (trusted, see `TrustedHost`) Host it names.
    `Origin: null` comes from sandboxed or opaque contexts: refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    o = urlsplit(origin)
    return origin.lower().rstrip("/") == public or _normal(o.netloc, o.scheme) == _normal(
        request.headers.get("host", ""), request.url.scheme
    )

"""Projects and their tokens.

Tokens are 192-bit random strings shown once; the store keeps only their SHA-256. A slow hash
(bcrypt) buys nothing for random secrets of this size and would cost ~100 ms per request. The
lookup is an exact match on the hash: whatever timing the index probe leaks is about the
SHA-256 of the guess, which an attacker cannot steer toward a stored hash without a preimage, so
this is as good as a constant-time compare (`hmac.compare_digest` guards the one place a secret
is compared directly: the web session's CSRF token).

Two scopes per project: `ingest` (write events) and `read` (query). A token is looked up at most
once per `token_cache_s` seconds per hub, so a revoked token keeps working for that long.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Any

from obshub.store.base import Project, Store

__all__ = ["AuthError", "TokenCache", "authorize", "create_project", "hash_token", "new_token"]

_PREFIX = {"ingest": "obi_", "read": "obr_"}


class AuthError(Exception):
    """401 (no/unknown credentials) or 403 (valid token, wrong scope or project)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def new_token(scope: str) -> str:
    return _PREFIX[scope] + secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_project(store: Store, name: str, base_url: str) -> dict[str, Any]:
    """Create a project with fresh tokens; returns the JSON of `obshub project create`."""
    ingest, read = new_token("ingest"), new_token("read")
    public_key = secrets.token_hex(16)  # Sentry DSN key; sentry-sdk accepts any string
    project = store.create_project(name, public_key, [("ingest", hash_token(ingest)),
                                                       ("read", hash_token(read)),
                                                       ("ingest", hash_token(public_key))])
    return {"project": project.name, "project_id": project.id, "ingest_token": ingest,
            "read_token": read, "dsn": dsn(project, base_url)}


def dsn(project: Project, base_url: str) -> str:
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{project.public_key}@{rest.rstrip('/')}/{project.id}"


class TokenCache:
    """token hash -> (project, scope) with a short TTL, so each request avoids a store round trip."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl = ttl_s
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, tuple[Project, str] | None]] = {}

    def peek(self, token: str) -> tuple[bool, tuple[Project, str] | None]:
        """(hit, found) from memory alone, so the event loop can skip a thread hop on a hit."""
        return self._cached(hash_token(token))

    def _cached(self, h: str) -> tuple[bool, tuple[Project, str] | None]:
        with self._lock:
            hit = self._items.get(h)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return True, hit[1]
        return False, None

    def lookup(self, store: Store, token: str) -> tuple[Project, str] | None:
        h = hash_token(token)
        hit, found = self._cached(h)
        if hit:
            return found
        now = time.monotonic()
        found = store.find_token(h)
        with self._lock:
            if len(self._items) > 10_000:  # bound memory against token-guessing floods
                self._items.clear()
            self._items[h] = (now, found)
        return found


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def authorize(found: tuple[Project, str] | None, scope: str, project_id: int | None = None) -> Project:
    """Judge a looked-up token: 401 if unknown, 403 for the wrong scope or project."""
    if found is None:
        raise AuthError(401, "unknown token")
    project, have = found
    if have != scope:
        raise AuthError(403, f"this is {_a(have)} {have} token; this endpoint needs {_a(scope)} {scope} token")
    if project_id is not None and project.id != project_id:
        raise AuthError(403, f"token belongs to project {project.name!r}, not project {project_id}")
    return project


def bearer(headers: Any) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

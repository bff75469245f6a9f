"""Projects and their tokens.

Tokens are 192-bit random strings shown once; the store keeps only their SHA-256. A slow hash
(bcrypt) buys nothing for random secrets of this size and would cost ~100 ms per request. The
lookup is an exact match on the hash: whatever timing the index probe leaks is about the
SHA-256 of the guess, which an attacker cannot steer toward a stored hash without a preimage, so
this is as good as a constant-time compare (`hmac.compare_digest` guards the one place a secret
is compared directly: the web session's CSRF token).

Four scopes, each a project's (docs/security.md, "Threat model", says who holds which):

    ingest  `obi_…`  write events on every ingest route (agents, in-app SDKs on servers)
    sentry  32 hex   write events on the Sentry routes only: the key of a DSN, which ships
                     inside browser and mobile apps, so anyone may hold it
    read    `obr_…`  query, the web UI, error triage
    admin   `oba_…`  define and delete uptime checks, which make the hub connect somewhere

A route names the scopes it takes (`authorize`); no scope includes another. A token is looked up
at most once per `token_cache_s` seconds per hub, so a revoked token keeps working for that long
on a hub that saw it just before (`obshub token revoke` writes the revocation to the store, which
every hub reads; no message between hubs is needed).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from obshub.errors import AuthError, Conflict, NotFound
from obshub.store.base import Project, Store, TokenRecord, TokenScope, hash_token

__all__ = [
    "INGEST_ROUTES",
    "SCOPES",
    "SENTRY_ROUTES",
    "AuthError",
    "Revoked",
    "TokenCache",
    "authorize",
    "create_project",
    "create_token",
    "hash_token",
    "new_token",
    "revoke_token",
    "shipper_token",
]

_PREFIX = {"ingest": "obi_", "read": "obr_", "sentry": "", "admin": "oba_"}
SCOPES = tuple(_PREFIX)
INGEST_ROUTES = ("ingest",)  # POST /api/v1/ingest
SENTRY_ROUTES = ("sentry", "ingest")  # the Sentry envelope and store routes
_TOKEN_ID = re.compile(r"[0-9a-f]{12}")
# Labels of the tokens `create_project` makes, so `obshub token list` tells them apart.
PROJECT_LABEL = "created with the project"
SENTRY_LABEL = "Sentry key of the DSN"


def new_token(scope: str) -> str:
    """192 random bits; a Sentry key is 128 in hex, Sentry's own form: the JavaScript SDK's DSN
    parser takes only word characters there (`-` of urlsafe base64 broke it)."""
    if scope == "sentry":
        return secrets.token_hex(16)
    return _PREFIX[scope] + secrets.token_urlsafe(24)


def create_project(store: Store, name: str, base_url: str) -> dict[str, Any]:
    """Create a project with fresh tokens; returns the JSON of `obshub project create`."""
    ingest, read = new_token("ingest"), new_token("read")
    public_key = new_token("sentry")  # the DSN's key: public, so it may only send to Sentry routes
    project = store.create_project(
        name,
        public_key,
        [
            ("ingest", hash_token(ingest), PROJECT_LABEL),
            ("read", hash_token(read), PROJECT_LABEL),
            ("sentry", hash_token(public_key), SENTRY_LABEL),
        ],
    )
    return {
        "project": project.name,
        "project_id": project.id,
        "ingest_token": ingest,
        "read_token": read,
        "dsn": dsn(project, base_url),
    }


def dsn(project: Project, base_url: str, key: str | None = None) -> str:
    """The Sentry DSN of a project, with the key `project create` made or `key` (a sentry token
    of `obshub token create --scope sentry`: the hub checks the key like a bearer token)."""
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{key or project.public_key}@{rest.rstrip('/')}/{project.id}"


def create_token(store: Store, project: Project, scope: TokenScope, label: str) -> tuple[str, TokenRecord]:
    """A new token of `scope` for `project`: (the secret, shown once; its stored record)."""
    if scope not in _PREFIX:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    token = new_token(scope)
    store.add_token(project.id, scope, hash_token(token), label)
    return token, next(t for t in store.list_tokens(project.id) if t.hash == hash_token(token))


@dataclass(frozen=True)
class Revoked:
    token: TokenRecord
    already: bool  # it was revoked before this call
    left: int  # tokens of the same project and scope still valid
    dsn_key: bool  # it is the key in the DSN `project create` printed


def revoke_token(store: Store, ref: str) -> Revoked:
    """Revoke the token `ref` names: its id (`TokenRecord.id`, 12 hex digits) or the token
    itself. NotFound if there is no such token; Conflict if two tokens share the id (then the
    token itself is needed)."""
    tokens = store.list_tokens()
    by_id = _TOKEN_ID.fullmatch(ref) is not None
    h = "" if by_id else hash_token(ref)
    matches = [t for t in tokens if (t.id == ref if by_id else t.hash == h)]
    if not matches:
        raise NotFound(f"no token with the id {ref}" if by_id else "no such token")
    if len(matches) > 1:
        raise Conflict(f"{len(matches)} tokens have the id {ref}: revoke with the token itself")
    before = matches[0]
    revoked = store.revoke_token(before.hash) or before  # tokens are never deleted
    left = sum(
        1
        for t in tokens
        if t.project_id == before.project_id
        and t.scope == before.scope
        and t.revoked_at is None
        and t.hash != before.hash
    )
    project = store.get_project_by_id(before.project_id)
    dsn_key = project is not None and hash_token(project.public_key) == before.hash
    return Revoked(revoked, before.revoked_at is not None, left, dsn_key)


class TokenCache:
    """token hash -> (project, scope) with a short TTL, so each request avoids a store round trip.
    Keyed by the hash: API requests hash their bearer token, web sessions carry only the hash."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl = ttl_s
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, tuple[Project, str] | None]] = {}

    def peek_hash(self, token_hash: str) -> tuple[bool, tuple[Project, str] | None]:
        """(hit, found) from memory alone, so the event loop can skip a thread hop on a hit."""
        with self._lock:
            hit = self._items.get(token_hash)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return True, hit[1]
        return False, None

    def lookup_hash(self, store: Store, token_hash: str) -> tuple[Project, str] | None:
        """From memory within the TTL, else from the store (remembered, a miss too)."""
        hit, found = self.peek_hash(token_hash)
        if hit:
            return found
        now = time.monotonic()
        found = store.find_token(token_hash)
        with self._lock:
            if len(self._items) > 10_000:  # bound memory against token-guessing floods
                self._items.clear()
            self._items[token_hash] = (now, found)
        return found


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def authorize(
    found: tuple[Project, str] | None, scope: TokenScope | Sequence[TokenScope], project_id: int | None = None
) -> Project:
    """Judge a looked-up token against the scope (or one of the scopes) a route takes: 401 if
    unknown, 403 naming both scopes for the wrong scope, 403 for another project."""
    if found is None:
        raise AuthError(401, "unknown or revoked token")
    project, have = found
    wanted = (scope,) if isinstance(scope, str) else tuple(scope)
    if have not in wanted:
        need = " or ".join(wanted)
        raise AuthError(403, f"this is {_a(have)} {have} token; this endpoint needs {_a(need)} {need} token")
    if project_id is not None and project.id != project_id:
        raise AuthError(403, f"token belongs to project {project.name!r}, not project {project_id}")
    return project


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def shipper_token(headers: Mapping[str, str]) -> str | None:
    """The token of a log shipper speaking another product's protocol (Elasticsearch `_bulk`,
    Loki push), in whichever form its config allows: `Bearer <token>`, HTTP Basic with the token
    as the password (any user: Loki's tenant, ES's `elastic`), or `ApiKey <token>`; an ES API
    key is base64 of `id:key`, so one that decodes to `<anything>:<token>` gives the token too."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, cred = value.strip().partition(" ")
    scheme, cred = scheme.lower(), cred.strip()
    if not cred:
        return None
    if scheme == "bearer":
        return cred
    if scheme not in ("basic", "apikey"):
        return None
    try:
        decoded = base64.b64decode(cred, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = None
    if scheme == "basic":
        return None if decoded is None else decoded.partition(":")[2] or None
    if decoded is not None and ":" in decoded:  # `id:key`, base64: Filebeat's `api_key: id:key`
        return decoded.partition(":")[2] or None
    return cred

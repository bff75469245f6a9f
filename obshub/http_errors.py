"""Domain errors -> JSON answers: the one mapping for every route.

The status and Retry-After come from the error itself (obshub/errors.py). The body is
`{"error": message}` (plus `column` for a query error that has one), or Relay's
`{"detail": message}` on the Sentry routes (`key="detail"`, with their CORS headers): the same
statuses and headers either way. A 401 says how to authenticate (`WWW-Authenticate`, RFC 9110).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

from obshub.errors import AuthError, Conflict, NotFound, ObshubError, QueryError, StoreOverloaded, StoreUnavailable

__all__ = ["ANSWERED", "error_headers", "error_message", "error_response"]

# What app.py answers for any route. Anything else raised is a bug: Starlette logs it, with its
# traceback, and answers a bare 500. (Ingest answers its own: obshub/ingest/pipeline.py.)
ANSWERED: tuple[type[ObshubError], ...] = (AuthError, QueryError, StoreUnavailable, StoreOverloaded, NotFound, Conflict)


def error_response(
    exc: ObshubError, *, key: str = "error", message: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The answer to `exc`: its status, `{key: message}` (default: the error's text), Retry-After
    when it has one, and `headers` (e.g. CORS, Sentry's rate limits)."""
    body: dict[str, Any] = {key: message or error_message(exc)}
    if isinstance(exc, QueryError) and exc.column is not None:  # a position in `q`; a bad `limit` has none
        body["column"] = exc.column
    return JSONResponse(body, status_code=exc.status, headers=error_headers(exc, headers))


def error_message(exc: ObshubError) -> str:
    """The error's text, or its status's phrase when it has none."""
    return str(exc) or HTTPStatus(exc.status).phrase.lower()


def error_headers(exc: ObshubError, headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """`headers` plus Retry-After when `exc` has one and WWW-Authenticate on a 401: the headers
    of every error answer, whatever its body (the OTLP routes answer a google.rpc.Status)."""
    out = dict(headers or {})
    if exc.retry_after is not None:
        out["Retry-After"] = str(exc.retry_after)
    if exc.status == 401:
        out["WWW-Authenticate"] = "Bearer"
    return out

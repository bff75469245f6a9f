"""ASGI middleware (Starlette, FastAPI, any ASGI app): correlation ids for each HTTP request.

Plain ASGI (``__init__(app)``, ``async __call__(scope, receive, send)``), like Starlette's own
``TrustedHostMiddleware``, so it adds no task hop: the endpoint runs in the task that bound the
ids, and ``bind_user()`` in an ``async`` endpoint is visible to everything after it. Wrap the app
outermost (``app = CorrelationMiddleware(app)``) to echo ``X-Request-ID`` on the 500 responses
Starlette's ``ServerErrorMiddleware`` produces too; added through ``Starlette(middleware=[...])``
it sits inside that one, and crashes are still logged with their ids but answered without the
header.

Per request: parse ``traceparent`` / ``tracestate`` / ``X-Request-ID`` / ``baggage`` (malformed or
oversized values are replaced, never trusted, never fatal), bind ``request_id``, ``trace_id`` and
a new ``span_id``, echo ``X-Request-ID`` on the response, and write one access line when the
response is done (method, path, status, duration_ms; error level with the exception on crashes).
Non-HTTP scopes (lifespan, websocket) pass through untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from obshub_sdk._access import CLIENT_CLOSED, log_access
from obshub_sdk.context import _FIELDS, _REQUEST
from obshub_sdk.propagation import baggage_enabled, begin_hop

__all__ = ["CorrelationMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WANTED = {b"traceparent", b"tracestate", b"x-request-id", b"baggage"}


class CorrelationMiddleware:
    """``CorrelationMiddleware(app, access_log=True, baggage=None)``.

    ``baggage``: accept user_id/session_id from inbound W3C baggage (``None``: follow
    ``configure(baggage=...)``). Only enable it where callers are your own services.
    """

    def __init__(self, app: ASGIApp, *, access_log: bool = True, baggage: bool | None = None):
        self.app = app
        self.access_log = access_log
        self.baggage = baggage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found: dict[bytes, list[str]] = {}
        for name, value in scope.get("headers") or ():
            name = name.lower()
            if name in _WANTED:
                found.setdefault(name, []).append(value.decode("latin-1"))
        traceparent = found.get(b"traceparent")
        request_ids = found.get(b"x-request-id")
        fields, state, parent = begin_hop(
            # Two traceparent headers are ambiguous: W3C says treat as invalid, start over.
            traceparent[0] if traceparent and len(traceparent) == 1 else None,
            request_ids[0] if request_ids else None,
            ",".join(found[b"tracestate"]) if b"tracestate" in found else None,
            ",".join(found[b"baggage"]) if b"baggage" in found else None,
            baggage_enabled(self.baggage),
        )
        request_id = fields["request_id"].encode("latin-1")
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id))
                message = {**message, "headers": headers}
            await send(message)

        t_fields = _FIELDS.set(fields)
        t_state = _REQUEST.set(state)
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            status = status or CLIENT_CLOSED
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if self.access_log:
                if failure is not None and (status is None or status < 500):
                    status = 500  # what the server will answer (or had no chance to)
                log_access(
                    scope.get("method", "?"),
                    scope.get("path", "?"),
                    status or 500,
                    time.perf_counter() - start,
                    state,
                    parent,
                    failure,
                )
            _REQUEST.reset(t_state)
            _FIELDS.reset(t_fields)

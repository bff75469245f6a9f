"""A client that goes away mid-request costs one log line, not a traceback.

Reading a body whose client has disconnected (an agent killed mid-upload, a browser closing a
tab during a login, a proxy timing out) makes Starlette raise `ClientDisconnect` from
`request.stream()`. Unhandled, it passed through Starlette's ServerErrorMiddleware (which tries
a 500 and re-raises "so that the server can log it") to uvicorn, whose `uvicorn.error` logger
wrote "Exception in ASGI application" with the whole traceback: ~5 KB per disconnect, for
something the client did and nobody can fix. This middleware, inside ServerErrorMiddleware and
around everything else (every route: ingest, API, pages), catches it and writes one structlog
line instead; uvicorn, seeing no answer to a connection that is gone, adds nothing.

A disconnect during a streamed answer (an export, the live tail) raises nothing today: uvicorn
speaks ASGI spec 2.3, so Starlette's StreamingResponse listens for the disconnect and cancels the
stream. Under spec 2.4 Starlette raises `ClientDisconnect` from the failed send instead, and it
lands here too ("during the answer"). Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Disconnects"]

log = structlog.get_logger("obshub")


class Disconnects:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except ClientDisconnect:
            log.info(
                "client disconnected",
                method=scope["method"],
                path=scope["path"],
                during="the answer" if started else "the request body",
            )

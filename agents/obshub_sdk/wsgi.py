"""WSGI middleware (Flask, Django, any WSGI app): correlation ids for each HTTP request.

WSGI servers reuse threads across requests and iterate the response body *after* the app
returned, so each request runs in its own ``contextvars.Context``: ``__call__``, every step of the
body iteration and ``close()`` enter that same context. Nothing leaks into the next request on
the thread, and lines logged by a streaming generator still carry the ids. The access line is
written at ``close()``, when the body has been sent, so ``duration_ms`` includes streaming.

Same header rules as the ASGI middleware (see ``obshub_sdk.asgi``). ``wsgi.file_wrapper``
responses are iterated as plain iterables (correct, without the sendfile shortcut).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from obshub_sdk._access import log_access
from obshub_sdk.context import _FIELDS, _REQUEST, RequestState
from obshub_sdk.propagation import baggage_enabled, begin_hop

__all__ = ["CorrelationMiddleware"]

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class CorrelationMiddleware:
    """``CorrelationMiddleware(app, access_log=True, baggage=None)``; Flask:
    ``app.wsgi_app = CorrelationMiddleware(app.wsgi_app)``."""

    def __init__(self, app: WSGIApp, *, access_log: bool = True, baggage: bool | None = None):
        self.app = app
        self.access_log = access_log
        self.baggage = baggage

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        ctx = contextvars.copy_context()
        return ctx.run(self._start, ctx, environ, start_response)

    def _start(
        self, ctx: contextvars.Context, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        fields, state, parent = begin_hop(
            environ.get("HTTP_TRACEPARENT"),
            environ.get("HTTP_X_REQUEST_ID"),
            environ.get("HTTP_TRACESTATE"),
            environ.get("HTTP_BAGGAGE"),
            baggage_enabled(self.baggage),
        )
        _FIELDS.set(fields)
        _REQUEST.set(state)
        request = _Request(self, environ, state, parent, ctx)
        request_id = fields["request_id"]

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            request.status = _status_code(status)
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append(("X-Request-ID", request_id))
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start_with_id)
        except BaseException as exc:
            request.finish(exc)
            raise
        return _Body(body, request)


def _status_code(status: str) -> int | None:
    try:
        return int(status.split(" ", 1)[0])
    except ValueError:
        return None


class _Request:
    __slots__ = ("ctx", "done", "environ", "mw", "parent", "start", "state", "status")

    def __init__(
        self,
        mw: CorrelationMiddleware,
        environ: dict[str, Any],
        state: RequestState,
        parent: str | None,
        ctx: contextvars.Context,
    ):
        self.mw = mw
        self.environ = environ
        self.state = state
        self.parent = parent
        self.ctx = ctx
        self.status: int | None = None
        self.start = time.perf_counter()
        self.done = False

    def finish(self, exc: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        if not self.mw.access_log:
            return
        status = self.status
        if exc is not None and (status is None or status < 500):
            status = 500
        log_access(
            self.environ.get("REQUEST_METHOD", "?"),
            self.environ.get("SCRIPT_NAME", "") + self.environ.get("PATH_INFO", ""),
            status or 500,
            time.perf_counter() - self.start,
            self.state,
            self.parent,
            exc,
        )


class _Body:
    """The app's response iterable, stepped and closed inside the request's context."""

    def __init__(self, body: Iterable[bytes], request: _Request):
        self._body = body
        self._it: Iterator[bytes] | None = None
        self._request = request

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        return self._request.ctx.run(self._next)

    def _next(self) -> bytes:
        if self._it is None:
            self._it = iter(self._body)
        try:
            return next(self._it)
        except StopIteration:
            raise
        except BaseException as exc:
            self._request.finish(exc)
            raise

    def close(self) -> None:
        self._request.ctx.run(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._request.finish()

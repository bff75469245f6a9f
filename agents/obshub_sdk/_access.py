"""The one access line per request both middlewares write, through stdlib ``logging``.

Why stdlib and not the SDK's sink directly: the middleware must also work in apps that never call
``configure()`` (they get a normal log record with the fields as attributes), and apps that do
get it rendered as JSON like every other line. Logger name ``obshub_sdk.access``; silence it with
``logging.getLogger("obshub_sdk.access").setLevel(logging.WARNING)`` or ``access_log=False``.

Only the path is logged, never the query string: query strings carry tokens and e-mail addresses
more often than anyone intends.
"""

from __future__ import annotations

import logging
from typing import Any

from obshub_sdk.context import RequestState
from obshub_sdk.formatter import OVERRIDES

ACCESS_LOGGER = logging.getLogger("obshub_sdk.access")

# Status for a request whose client went away before a response (nginx's convention).
CLIENT_CLOSED = 499


def log_access(
    method: str,
    path: str,
    status: int,
    duration_s: float,
    state: RequestState,
    parent_span_id: str | None,
    exc: BaseException | None = None,
) -> None:
    """Never raises: a broken log config must not turn a served request into an error."""
    try:
        level = logging.ERROR if status >= 500 else logging.INFO
        if ACCESS_LOGGER.disabled:  # by dictConfig's disable_existing_loggers (its default), not by choice
            ACCESS_LOGGER.disabled = False
        if not ACCESS_LOGGER.isEnabledFor(level):
            return
        attrs: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_s * 1000, 3),
        }
        if parent_span_id:
            attrs["parent_span_id"] = parent_span_id
        override: dict[str, Any] = {}
        # A user bound in a worker thread never reached this context; the shared state did.
        if state.user_id:
            override["user_id"] = state.user_id
        if state.session_id:
            override["session_id"] = state.session_id
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        ACCESS_LOGGER.log(
            level,
            "%s %s %s",
            method,
            path,
            status,
            exc_info=exc_info,
            extra={**attrs, OVERRIDES: override},
        )
    except Exception:
        pass

"""obshub in-app SDK: JSON log lines that say which request and which user they belong to.

``configure(service=...)`` once at startup; add ``asgi.CorrelationMiddleware`` or
``wsgi.CorrelationMiddleware``; call ``bind_user()`` after authentication; pass
``outgoing_headers()`` (or the httpx/requests hooks) on calls to other services; ``track()`` for
analytics facts. The obshub agent ships the lines; the hub joins them by ``request_id`` /
``trace_id`` / ``user_id`` across hosts. Stdlib only, structlog and orjson used when installed;
this package never imports the hub or the agent. Full guide: docs/sdk.md.
"""

from __future__ import annotations

from obshub_sdk._setup import configure, track
from obshub_sdk.context import bind, bind_user, carry_context, current, start_trace
from obshub_sdk.formatter import JSONFormatter
from obshub_sdk.propagation import outgoing_headers

__all__ = [
    "JSONFormatter",
    "bind",
    "bind_user",
    "carry_context",
    "configure",
    "current",
    "outgoing_headers",
    "start_trace",
    "track",
]

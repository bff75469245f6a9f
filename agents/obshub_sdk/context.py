"""Correlation context: who and which request the current code is working for.

Why contextvars: one value per asyncio task and per thread, copied (not shared) when a task is
created, so two concurrent requests on one event loop never see each other's ids. What carries
the context along and what does not:

- ``await`` inside one task: carried (same context).
- ``asyncio.create_task`` / ``TaskGroup``: the new task gets a *copy* taken at creation; a
  ``bind_user`` inside the child does not flow back to the parent.
- ``asyncio.to_thread`` and Starlette's threadpool (``run_in_threadpool``): copy the context into
  the worker thread, so logs there carry the ids.
- ``loop.run_in_executor``, ``ThreadPoolExecutor.submit``/``map`` and plain ``threading.Thread``:
  do **not** copy it; the worker runs with an empty context. Wrap the callable with
  :func:`carry_context` (``pool.submit(carry_context(fn), x)``).

State is two context variables. ``_FIELDS`` holds the keys every log line carries, as a dict that
is never mutated (each bind stores a new dict) so a log call reads it with a single ``get()`` and
merges it with one ``dict.update``. ``_REQUEST`` holds per-hop propagation state (trace flags,
``tracestate``, foreign baggage) and is the one *mutable* object shared by everything serving one
request, so that a ``bind_user`` made in a worker thread still reaches the access log line the
middleware writes when the request ends.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import ParamSpec, TypeVar

__all__ = [
    "CORRELATION_KEYS",
    "bind",
    "bind_user",
    "carry_context",
    "current",
    "start_trace",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The correlation keys of the hub's event schema (docs/api.md), in the order lines print them.
CORRELATION_KEYS: tuple[str, ...] = ("request_id", "trace_id", "span_id", "user_id", "session_id")

# 128 is the hub's bound for ids (docs/api.md: `id` ≤ 128); longer values are cut, not rejected,
# because a log call must never fail over a too-long user id.
_MAX_ID = 128

_TRACE_ID = re.compile(r"(?!0{32})[0-9a-f]{32}")

_EMPTY: Mapping[str, str] = {}
_FIELDS: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("obshub_sdk.fields", default=_EMPTY)


class RequestState:
    """Mutable per-hop state shared by every task/thread serving one request (see module doc)."""

    __slots__ = ("baggage", "flags", "session_id", "tracestate", "user_id")

    def __init__(self, flags: str = "01", tracestate: str | None = None, baggage: str | None = None):
        self.flags = flags  # W3C trace-flags of the incoming traceparent; "01" = sampled
        self.tracestate = tracestate  # forwarded unchanged (W3C asks vendors to propagate it)
        self.baggage = baggage  # foreign baggage members, forwarded when baggage is enabled
        self.user_id: str | None = None  # last user bound while serving this request
        self.session_id: str | None = None


_REQUEST: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("obshub_sdk.request", default=None)


def current() -> dict[str, str]:
    """The correlation keys bound right now (a copy; changing it changes nothing)."""
    return dict(_FIELDS.get())


def _clean(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return text[:_MAX_ID]


def bind(**keys: object) -> None:
    """Bind correlation keys (``request_id``, ``trace_id``, ``span_id``, ``user_id``,
    ``session_id``) in the current context; ``None`` unbinds a key.

    Other names raise ``TypeError``: the SDK only promotes the hub's indexed keys, arbitrary
    fields belong in the log call (``log.info("x", plan="pro")``) where they land in ``attrs``.
    """
    unknown = set(keys) - set(CORRELATION_KEYS)
    if unknown:
        raise TypeError(f"not a correlation key: {', '.join(sorted(unknown))}")
    fields = dict(_FIELDS.get())
    for key, value in keys.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = _clean(value)
    _FIELDS.set(fields)


def bind_user(user_id: object, session_id: object | None = None) -> None:
    """Attach a user (and optionally a session) to everything logged from here on in this
    context, and to the access line of the request being served (even from a worker thread).

    ``user_id`` is whatever identifies the user in *your* system; prefer an opaque id over an
    e-mail address (it is indexed and shown in the hub).
    """
    uid = None if user_id is None else _clean(user_id)
    sid = None if session_id is None else _clean(session_id)
    fields = dict(_FIELDS.get())
    if uid is None:
        fields.pop("user_id", None)
    else:
        fields["user_id"] = uid
    if sid is not None:
        fields["session_id"] = sid
    _FIELDS.set(fields)
    state = _REQUEST.get()
    if state is not None:
        state.user_id = uid
        if sid is not None:
            state.session_id = sid


def carry_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so it runs with the caller's correlation context, wherever it is called.

    For thread pools, which do not copy contextvars: ``pool.submit(carry_context(work), item)``.
    The context is captured now; each call runs in its own copy of it, because one
    ``contextvars.Context`` cannot be entered by two threads at once (``pool.map`` would
    otherwise fail with "cannot enter context").
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


def otel_ids() -> tuple[str, str] | None:
    """The active OpenTelemetry span's ``(trace_id, span_id)`` as lowercase hex, or ``None`` when
    there is none. Read only when the app has imported ``opentelemetry.trace`` (looked up in
    ``sys.modules``): the SDK never imports or requires OpenTelemetry, and an app without it pays
    one dict lookup per line. Log lines written inside an OTel span carry that span's ids (over
    the SDK's own), so the hub puts them on that span's bar in the trace waterfall."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    except Exception:  # a log call must never fail over a half-initialised or foreign OTel
        return None


def new_trace_id() -> str:
    """32 lowercase hex digits, never all zero (W3C trace-id)."""
    value = os.urandom(16).hex()
    return value if value != "0" * 32 else new_trace_id()


def new_span_id() -> str:
    """16 lowercase hex digits, never all zero (W3C parent-id)."""
    value = os.urandom(8).hex()
    return value if value != "0" * 16 else new_span_id()


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, inside the accepted X-Request-ID charset."""
    return os.urandom(16).hex()


@contextlib.contextmanager
def start_trace(request_id: str | None = None, trace_id: str | None = None) -> Iterator[dict[str, str]]:
    """Bind a fresh request/trace for work no HTTP request started (a job, a CLI command, a
    queue consumer), so its lines and outgoing calls correlate like a request's would.

    User keys already bound stay bound. Yields the bound fields; restores the previous context
    on exit.
    """
    if trace_id is not None and not _TRACE_ID.fullmatch(trace_id):
        raise ValueError("trace_id must be 32 lowercase hex digits, not all zero")
    fields = {
        "request_id": _clean(request_id) if request_id else new_request_id(),
        "trace_id": trace_id or new_trace_id(),
        "span_id": new_span_id(),
    }
    previous = _FIELDS.get()
    for key in ("user_id", "session_id"):
        if key in previous:
            fields[key] = previous[key]
    t_fields = _FIELDS.set(fields)
    t_state = _REQUEST.set(RequestState())
    try:
        yield dict(fields)
    finally:
        _REQUEST.reset(t_state)
        _FIELDS.reset(t_fields)

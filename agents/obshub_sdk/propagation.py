"""Carrying the correlation from one service to the next: W3C Trace Context and baggage.

Why W3C and not only our own header: ``traceparent`` is what OpenTelemetry, proxies and most
vendors already forward, so a trace survives hops we do not instrument. ``X-Request-ID`` rides
along because it is what humans grep for and many load balancers already set.

Inbound values come from the network and are treated as hostile: a malformed ``traceparent``
starts a new trace, an ``X-Request-ID`` that is too long or uses other characters is replaced by a
generated one, and nothing here raises on bad input.

``baggage`` (user_id/session_id to the next hop) is **off by default**: baggage travels to every
downstream service, including third-party APIs you call, so it leaks user identifiers out of your
system. Turn it on (``configure(baggage=True)`` or per call) only for calls between your own
services.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

from obshub_sdk.context import _FIELDS, _REQUEST, RequestState, new_request_id, new_span_id, new_trace_id

__all__ = [
    "httpx_async_event_hooks",
    "httpx_event_hooks",
    "outgoing_headers",
    "parse_traceparent",
    "set_baggage_default",
    "valid_request_id",
]

# W3C Trace Context §3.2: version-traceid-parentid-flags, lowercase hex. Versions above 00 may
# append fields after a dash; version ff is forbidden; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"(?!ff)([0-9a-f]{2})-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# Bounds on what we accept from the wire, so one request cannot bloat every log line it causes.
_MAX_TRACEPARENT = 512
_MAX_TRACESTATE = 512  # W3C: vendors may drop tracestate past 512 chars
_MAX_BAGGAGE = 8192  # W3C baggage: at least 8192 bytes must be supported, no need for more
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_BAGGAGE_KEYS = {"user_id": "obshub.user_id", "session_id": "obshub.session_id"}
_OUR_BAGGAGE = frozenset(_BAGGAGE_KEYS.values())

_baggage_default = False


def set_baggage_default(enabled: bool) -> None:
    """Whether ``outgoing_headers`` sends, and the middleware accepts, user_id/session_id as
    W3C baggage when not told per call. ``configure(baggage=...)`` sets this."""
    global _baggage_default
    _baggage_default = bool(enabled)


def baggage_enabled(override: bool | None) -> bool:
    return _baggage_default if override is None else override


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_span_id, flags)`` from a ``traceparent`` header, or ``None`` when it
    is absent or malformed (the caller then starts a new trace)."""
    if not value or len(value) > _MAX_TRACEPARENT:
        return None
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "00" and rest:  # version 00 has exactly four fields
        return None
    return trace_id, parent_id, flags


def valid_request_id(value: str | None) -> str | None:
    """The inbound ``X-Request-ID`` if it is 1–128 chars of ``[A-Za-z0-9._:-]``, else ``None``."""
    if value and len(value) <= 128 and _REQUEST_ID.fullmatch(value):
        return value
    return None


def _parse_baggage(value: str) -> tuple[dict[str, str], str | None]:
    """Our keys out of a baggage header, plus the other members (kept verbatim to forward)."""
    ours: dict[str, str] = {}
    others: list[str] = []
    for member in value.split(",")[:180]:  # W3C: at most 180 members
        key, sep, rest = member.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        if key in _OUR_BAGGAGE:
            raw = rest.split(";", 1)[0].strip()
            decoded = unquote(raw)
            if 0 < len(decoded) <= 128 and decoded.isprintable():
                ours[key.removeprefix("obshub.")] = decoded
        else:
            others.append(member.strip())
    return ours, (",".join(others) or None)


def begin_hop(
    traceparent: str | None,
    request_id: str | None,
    tracestate: str | None = None,
    baggage: str | None = None,
    accept_baggage: bool = False,
) -> tuple[dict[str, str], RequestState, str | None]:
    """Correlation for one inbound request: ``(fields to bind, request state, parent span id)``.

    A new span id is always minted: this hop is a child of the caller's span.
    """
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        trace_id, parent, flags = new_trace_id(), None, "01"
        tracestate = None  # tracestate without a valid traceparent must be discarded (W3C)
    else:
        trace_id, parent, flags = parsed
        if tracestate is not None and len(tracestate) > _MAX_TRACESTATE:
            tracestate = None
    fields = {
        "request_id": valid_request_id(request_id) or new_request_id(),
        "trace_id": trace_id,
        "span_id": new_span_id(),
    }
    state = RequestState(flags=flags, tracestate=tracestate)
    if baggage and len(baggage) <= _MAX_BAGGAGE:
        ours, others = _parse_baggage(baggage)
        state.baggage = others
        if accept_baggage:
            for key, val in ours.items():
                fields[key] = val
                setattr(state, key, val)
    return fields, state, parent


def outgoing_headers(baggage: bool | None = None) -> dict[str, str]:
    """Headers that carry the current correlation to the next service.

    ``traceparent`` names this hop's span as the parent, ``X-Request-ID`` keeps the request id,
    ``tracestate`` is forwarded unchanged. With baggage enabled (see module doc for the PII
    trade-off) the bound user_id/session_id travel as ``baggage`` too. Outside any request or
    :func:`~obshub_sdk.start_trace` block there is nothing to carry and the result is ``{}``.
    """
    fields = _FIELDS.get()
    trace_id = fields.get("trace_id")
    if not trace_id:
        return {}
    state = _REQUEST.get()
    flags = state.flags if state is not None else "01"
    headers = {"traceparent": f"00-{trace_id}-{fields.get('span_id') or new_span_id()}-{flags}"}
    request_id = fields.get("request_id")
    if request_id:
        headers["x-request-id"] = request_id
    if state is not None and state.tracestate:
        headers["tracestate"] = state.tracestate
    if baggage_enabled(baggage):
        members = [f"{wire}={quote(fields[key], safe='')}" for key, wire in _BAGGAGE_KEYS.items() if fields.get(key)]
        if state is not None and state.baggage:
            members.append(state.baggage)
        if members:
            headers["baggage"] = ",".join(members)
    return headers


def _inject(request: Any, baggage: bool | None) -> None:
    # Headers the caller set explicitly win: they may be deliberately starting a new trace.
    for name, value in outgoing_headers(baggage).items():
        if name not in request.headers:
            request.headers[name] = value


def httpx_event_hooks(baggage: bool | None = None) -> dict[str, list[Callable[[Any], None]]]:
    """``event_hooks`` for ``httpx.Client`` that add :func:`outgoing_headers` to every request::

        client = httpx.Client(event_hooks=httpx_event_hooks())

    httpx runs request hooks in the caller's thread/task, so the caller's context is the one read.
    """

    def add_correlation(request: Any) -> None:
        _inject(request, baggage)

    return {"request": [add_correlation], "response": []}


def httpx_async_event_hooks(
    baggage: bool | None = None,
) -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
    """``event_hooks`` for ``httpx.AsyncClient`` (hooks must be coroutines there)."""

    async def add_correlation(request: Any) -> None:
        _inject(request, baggage)

    return {"request": [add_correlation], "response": []}

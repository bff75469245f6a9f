"""The structlog side of ``configure()``: one final processor and a line-writing logger.

Why one processor instead of structlog's chain (``add_log_level``, ``TimeStamper``,
``merge_contextvars``, ``format_exc_info``, ``JSONRenderer``): each processor is a Python call
and most of them copy or rescan the event dict; folding level, time, static fields, correlation,
error and serialization into one pass is what keeps a call within the ≤1.3x budget against plain
structlog (bench/sdk.py measures it).

The renderer and the logger factory are module singletons that ``configure()`` re-points at a new
sink and new static fields, because ``cache_logger_on_first_use`` freezes the processor list into
every logger already used. The level, baked into the wrapper class, cannot change for loggers
already used (structlog's own rule for filtering loggers): call ``configure()`` first.

Importing this module imports structlog; ``configure()`` skips it when structlog is missing.
"""

from __future__ import annotations

import contextvars
from typing import Any

import structlog
from structlog.contextvars import STRUCTLOG_KEY_PREFIX
from structlog.typing import EventDict

from obshub_sdk._render import (
    MAX_MESSAGE_BYTES,
    MAX_VALUE_BYTES,
    TOP_LEVEL_KEYS,
    Sink,
    dumps,
    error_from_exc_info,
    fit,
    ts_now,
)
from obshub_sdk.context import _FIELDS, otel_ids

_LEVELS = {
    "debug": "debug",
    "info": "info",
    "msg": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "exception": "error",
    "failure": "error",
    "err": "error",
    "critical": "critical",
    "fatal": "critical",
}


def merge_structlog_contextvars(ctx_fields: EventDict) -> None:
    """Values bound with ``structlog.contextvars.bind_contextvars`` (opt-in: this copies and
    walks the whole context on every call; bench/sdk.py shows what structlog's own
    ``merge_contextvars``, which does the same, costs)."""
    prefix_len = len(STRUCTLOG_KEY_PREFIX)
    for var, value in contextvars.copy_context().items():
        if var.name.startswith(STRUCTLOG_KEY_PREFIX) and value is not Ellipsis:
            ctx_fields.setdefault(var.name[prefix_len:], value)


class Renderer:
    """Final processor: event dict -> JSON line (bytes, newline included)."""

    def __init__(self) -> None:
        self.static: dict[str, str] = {}
        self.merge_contextvars = False

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> bytes:
        message = event_dict.pop("event", "")
        line: dict[str, Any] = {
            "ts": ts_now(),
            "level": _LEVELS.get(method_name, "info"),
            "message": fit(message if isinstance(message, str) else str(message), MAX_MESSAGE_BYTES),
        }
        name = event_dict.pop("logger", None) or getattr(logger, "name", None)
        if name:
            line["logger"] = name if type(name) is str else str(name)
        line.update(self.static)
        fields = _FIELDS.get()
        if fields:
            line.update(fields)
        otel = otel_ids()
        if otel is not None:
            line["trace_id"], line["span_id"] = otel
        if self.merge_contextvars:
            merge_structlog_contextvars(event_dict)
        if event_dict:
            attrs: dict[str, Any] = {}
            for key, value in event_dict.items():
                if key in TOP_LEVEL_KEYS:
                    # The hub takes only strings (or numbers) here and rejects the whole line
                    # otherwise; None means "not set".
                    if value is not None:
                        line[key] = value if type(value) is str else str(value)
                elif key == "exc_info":
                    error = error_from_exc_info(value)
                    if error is not None:
                        line["error"] = error
                else:
                    attrs[key] = fit(value, MAX_VALUE_BYTES) if type(value) is str else value
            if attrs:
                line["attrs"] = attrs
        return dumps(line)


class LineLogger:
    """What structlog wraps: hands rendered lines to the current sink. ``name`` is the argument
    of ``structlog.get_logger(name)`` and becomes the ``logger`` key."""

    __slots__ = ("_factory", "name")

    def __init__(self, factory: LineLoggerFactory, name: str | None) -> None:
        self.name = name
        self._factory = factory

    def msg(self, line: bytes) -> None:
        self._factory.sink.write(line)

    debug = info = warning = warn = error = exception = critical = fatal = failure = log = msg


class LineLoggerFactory:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def __call__(self, *args: Any) -> LineLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return LineLogger(self, name)


RENDERER = Renderer()
FACTORY = LineLoggerFactory(Sink(None))


def install(sink: Sink, static: dict[str, str], level: int, merge_contextvars: bool) -> None:
    RENDERER.static = static
    RENDERER.merge_contextvars = merge_contextvars
    FACTORY.sink = sink
    structlog.configure(
        processors=[RENDERER],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=FACTORY,
        context_class=dict,
        cache_logger_on_first_use=True,
    )

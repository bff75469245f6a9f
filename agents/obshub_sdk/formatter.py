"""stdlib ``logging`` as JSON lines: a Formatter usable on its own, and the handler
``configure()`` installs on the root logger.

Why stdlib matters even for structlog users: third-party libraries (uvicorn, httpx, SQLAlchemy,
Flask) log through ``logging``; routing the root logger through the same renderer makes their
records come out with the same keys and the same correlation ids as the app's own lines.

``extra={...}`` fields: correlation keys (``user_id`` ...) go top-level, anything else into
``attrs``. The context is read when the record is *emitted*, i.e. in the thread that logged it;
with a ``QueueHandler`` the ids would be read in the listener thread and lost, so format before
queueing (or log directly, as configure() does).
"""

from __future__ import annotations

import logging
from typing import Any

from obshub_sdk._render import (
    MAX_MESSAGE_BYTES,
    MAX_VALUE_BYTES,
    TOP_LEVEL_KEYS,
    Sink,
    dumps,
    error_object,
    fit,
    ts_from_float,
)
from obshub_sdk.context import _FIELDS, otel_ids

__all__ = ["JSONFormatter"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
# ``color_message`` is uvicorn's ANSI-coloured copy of the message: noise in a JSON line.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
# Extra key through which the SDK itself (track(), access lines) sets top-level fields such as
# kind/name that a user's ``extra=`` must not be able to set by accident.
OVERRIDES = "_obshub"


def level_name(levelno: int) -> str:
    """Map any numeric level (custom ones too) onto the hub's five level names."""
    if levelno <= logging.DEBUG:
        return "debug"
    if levelno <= logging.INFO:
        return "info"
    if levelno <= logging.WARNING:
        return "warning"
    if levelno <= logging.ERROR:
        return "error"
    return "critical"


_LEVELS = {n: level_name(n) for n in range(0, 61)}


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # "%d" % "x" in someone's log call must still produce a line
        return f"{record.msg!s} {record.args!r}"


class JSONFormatter(logging.Formatter):
    """Formats a record as the SDK's JSON line (see ``_render`` for the shape).

    Usable without ``configure()``, e.g. in ``dictConfig``::

        "formatters": {"json": {"()": "obshub_sdk.JSONFormatter", "service": "shop"}}
    """

    def __init__(
        self,
        service: str | None = None,
        host: str | None = None,
        env: str | None = None,
        release: str | None = None,
    ) -> None:
        super().__init__()
        static = {"service": service, "host": host, "env": env, "release": release}
        self.static = {k: v for k, v in static.items() if v is not None}

    def to_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        level = _LEVELS.get(record.levelno) or level_name(record.levelno)
        line: dict[str, Any] = {
            "ts": ts_from_float(record.created),
            "level": level,
            "message": fit(_message(record), MAX_MESSAGE_BYTES),
            "logger": record.name,
        }
        line.update(self.static)
        fields = _FIELDS.get()
        if fields:
            line.update(fields)
        otel = otel_ids()
        if otel is not None:
            line["trace_id"], line["span_id"] = otel
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None:
            line["error"] = error_object(exc_info[1])
        extra = record.__dict__.keys() - _RECORD_ATTRS
        if extra:
            attrs: dict[str, Any] = {}
            values = record.__dict__
            for key in sorted(extra):
                if key == OVERRIDES:
                    continue
                if key in TOP_LEVEL_KEYS:
                    value = values[key]
                    if value is not None:  # strings only: the hub rejects a line otherwise
                        line[key] = value if type(value) is str else str(value)
                else:
                    value = values[key]
                    attrs[key] = fit(value, MAX_VALUE_BYTES) if type(value) is str else value
            override = values.get(OVERRIDES)
            if override:  # read-only: other handlers may format the same record after us
                for key, value in override.items():
                    if key == "attrs":
                        attrs.update(value)
                    else:
                        line[key] = value
            if attrs:
                line["attrs"] = attrs
        if record.stack_info:
            line.setdefault("attrs", {})["stack_info"] = record.stack_info
        return line

    def to_line(self, record: logging.LogRecord) -> bytes:
        """The record as one JSON line, newline included."""
        return dumps(self.to_dict(record))

    def format(self, record: logging.LogRecord) -> str:
        return self.to_line(record)[:-1].decode("utf-8")


class SinkHandler(logging.Handler):
    """Writes JSONFormatter lines to a :class:`~obshub_sdk._render.Sink`.

    ``handle`` skips ``logging.Handler``'s per-handler lock: the sink already serializes writes,
    and formatting outside any lock lets threads format in parallel.

    ``close`` leaves the sink open: ``logging.config.dictConfig`` (uvicorn's default log config,
    Django's ``LOGGING``, gunicorn) closes every handler of the process, and the sink is shared
    with structlog; closing the file there silently lost every later line. The sink's owner
    (``configure()``) closes it.
    """

    def __init__(self, sink: Sink, formatter: JSONFormatter) -> None:
        super().__init__()
        self.sink = sink
        self.json = formatter
        self.setFormatter(formatter)

    def handle(self, record: logging.LogRecord) -> bool:
        checked = self.filter(record)
        if not checked:
            return False
        if isinstance(checked, logging.LogRecord):  # 3.12+: a filter may return a new record
            record = checked
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.json.to_line(record))
        except Exception:
            self.handleError(record)

"""``configure()`` and ``track()``: wiring structlog and stdlib logging to one JSON sink.

Why both frameworks write to one sink object: lines from structlog calls, from third-party
libraries' stdlib records and from ``track()`` land in one file in call order, never interleaved
mid-line, which is what the agent tails.

Logging reconfigured after ``configure()`` (``logging.config.dictConfig`` from uvicorn's default
``log_config``, Django's ``LOGGING``, gunicorn's ``logconfig_dict``; ``fileConfig``;
``basicConfig(force=True)``) closes every handler and may take ours off the root logger. The sink
stays open (the handler does not own it), and ``_RootHandler.close`` arms a LogRecord factory
that puts the handler back on the root logger at the next record: records cost nothing extra
until a reconfiguration happened, then one list lookup.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from obshub_sdk._render import Sink, set_in_app_modules
from obshub_sdk.formatter import OVERRIDES, JSONFormatter, SinkHandler
from obshub_sdk.propagation import set_baggage_default

try:
    from obshub_sdk import _structlog
except ImportError:  # structlog is optional: stdlib logging alone still works
    _structlog = None  # type: ignore[assignment]

__all__ = ["configure", "track"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Environment override for the host name, e.g. two services on one machine posing as two hosts.
# Not OBSHUB_HOST: that one is the hub's listen address (docs/configuration.md).
HOST_ENV = "OBSHUB_SDK_HOST"
TRACK_LOGGER = "obshub_sdk.track"

_lock = threading.Lock()
_TRACK = logging.getLogger(TRACK_LOGGER)


class _RootHandler(SinkHandler):
    """The handler ``configure()`` puts on the root logger."""

    def close(self) -> None:
        super().close()  # logging's bookkeeping only: the sink stays open
        if self is _current:  # closed by a logging reconfiguration, not by configure() replacing it
            _watch_root()


_current: _RootHandler | None = None  # the handler of the last configure()
_next_factory: Callable[..., logging.LogRecord] | None = None  # the factory ours wraps, once armed


def _watch_root() -> None:
    global _next_factory
    if _next_factory is None:
        _next_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_make_record)


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every new record (before it reaches any handler): the SDK's handler is back on the root
    logger if a reconfiguration took it off. addHandler is idempotent under logging's lock."""
    handler = _current
    if handler is not None and handler not in logging.root.handlers and not handler.sink.closed:
        logging.root.addHandler(handler)
    assert _next_factory is not None
    return _next_factory(*args, **kwargs)


def _detach() -> None:
    """Undo ``configure()`` for the stdlib side (tests): the handler leaves the root logger, its
    file is closed and nothing puts it back."""
    global _current, _next_factory
    with _lock:
        handler, _current = _current, None
        if handler is not None:
            logging.root.removeHandler(handler)
            handler.sink.close()
        if _next_factory is not None and logging.getLogRecordFactory() is _make_record:
            logging.setLogRecordFactory(_next_factory)
            _next_factory = None


def _level(level: str | int) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    try:
        return _LEVELS[str(level).lower()]
    except KeyError:
        raise ValueError(f"level must be one of {', '.join(sorted(_LEVELS))} or an int, not {level!r}") from None


def configure(
    service: str,
    path: str | os.PathLike[str] | Any | None = None,
    level: str | int = "info",
    *,
    host: str | None = None,
    env: str | None = None,
    release: str | None = None,
    baggage: bool = False,
    structlog_contextvars: bool = False,
    replace_handlers: bool = True,
    in_app_modules: tuple[str, ...] | list[str] = (),
) -> None:
    """Make structlog and stdlib logging emit one JSON object per line.

    ``path``: a file to append to (created if missing), an open stream, or ``None`` for stdout.
    ``level``: ``debug`` ``info`` ``warning`` ``error`` ``critical`` (or a ``logging`` int).
    ``host``: defaults to ``$OBSHUB_SDK_HOST``, then the machine's hostname (looked up once).
    ``env``/``release``: added to every line when given.
    ``baggage``: send and accept user_id/session_id as W3C baggage (PII: see docs/sdk.md).
    ``structlog_contextvars``: also merge ``structlog.contextvars.bind_contextvars`` values
    (walks the whole context on every call, hence off by default; ``bind()`` is the cheap
    equivalent).
    ``replace_handlers``: drop the root logger's existing handlers first, like
    ``logging.basicConfig(force=True)``, so records are not printed twice in two formats.
    ``in_app_modules``: module prefixes whose frames are ``in_app`` even from site-packages
    (for apps deployed with ``pip install``; otherwise site-packages means "library").

    Call it once, at startup, before the first log call: structlog loggers cache their level on
    first use. Calling it again re-points every logger at the new file/service. A later
    ``logging.config.dictConfig`` (uvicorn, Django, gunicorn) does not stop the lines: see the
    module docstring and docs/sdk.md.
    """
    if not service:
        raise ValueError("configure() needs a service name")
    levelno = _level(level)
    host_name = host or os.environ.get(HOST_ENV) or socket.gethostname()
    static = {"service": service, "host": host_name}
    if env:
        static["env"] = env
    if release:
        static["release"] = release
    sink = Sink(os.fspath(path) if isinstance(path, (str, os.PathLike)) else path)
    formatter = JSONFormatter(service=service, host=host_name, env=env, release=release)
    handler = _RootHandler(sink, formatter)
    handler._obshub_sdk = True  # type: ignore[attr-defined]

    global _current
    with _lock:
        root = logging.getLogger()
        old = [h for h in root.handlers if getattr(h, "_obshub_sdk", False)]
        if _current is not None and _current not in old:  # a reconfiguration took it off the root
            old.append(_current)
        for h in list(root.handlers) if replace_handlers else old:
            root.removeHandler(h)
        root.addHandler(handler)
        root.setLevel(levelno)
        _current = handler
        # Analytics events are facts, not chatter: emitted whatever the log level.
        _TRACK.setLevel(logging.INFO)
        set_baggage_default(baggage)
        set_in_app_modules(tuple(in_app_modules))
        if _structlog is not None:
            _structlog.install(sink, static, levelno, structlog_contextvars)
        for h in old:  # after re-pointing structlog, so no call writes to a closed file
            h.close()
            if isinstance(h, SinkHandler):
                h.sink.close()


def track(name: str, distinct_id: object | None = None, **props: Any) -> None:
    """Log one analytics event: ``{"kind": "event", "name": name, "attrs": props, ...}``.

    Record facts as they happen (``track("checkout", plan="pro", items=3)``) and decide later
    what they mean. ``distinct_id`` is who did it; by default the bound ``user_id``. The line
    carries the request's correlation keys like any other log line. Never raises.
    """
    try:
        if _TRACK.disabled:  # dictConfig's disable_existing_loggers (its default) disabled it
            _TRACK.disabled = False
        override: dict[str, Any] = {"kind": "event", "name": str(name), "attrs": props}
        if distinct_id is not None:
            override["user_id"] = str(distinct_id)[:128]
        _TRACK.info("%s", name, extra={OVERRIDES: override})
    except Exception:  # analytics must never break the feature being measured
        pass

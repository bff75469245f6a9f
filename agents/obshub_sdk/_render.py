"""Turning one log call into one JSON line: timestamps, the ``error`` object, serialization,
and the locked sink both structlog and stdlib logging write to.

This is the hot path of every log call, so it avoids ``datetime`` (the seconds prefix of the
timestamp is formatted once per second and reused: 0.76 µs instead of 1.77 µs for
``datetime.now(timezone.utc).isoformat()`` on the bench VM), uses orjson when it is installed
(0.8 µs instead of 5.1 µs for stdlib ``json`` on a typical line) and builds one dict per line.

Line shape (keys the hub indexes stay top-level, everything else goes under ``attrs`` so a user
field called ``id``, ``kind`` or ``name`` can never be mistaken for the hub's own fields)::

    {"ts","level","message","logger","service","host",["env","release"],
     <correlation keys>, ["kind","name"], ["error"], ["attrs"]}
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

try:
    import orjson as _orjson
except ImportError:  # optional: stdlib json is the fallback
    _orjson = None  # type: ignore[assignment]

#: Keys kept at the top level of a line; anything else a caller passes goes into ``attrs``.
TOP_LEVEL_KEYS = frozenset(
    {"service", "host", "env", "release", "logger", "request_id", "trace_id", "span_id", "user_id", "session_id"}
)

# Bounds for the error object: one pathological recursion must not produce a 10 MB line
# (the hub rejects bodies over 10 MiB). 64 frames covers real stacks; we keep the outermost 16
# (where the request entered) and the innermost 48 (where it broke).
_MAX_FRAMES = 64
_HEAD_FRAMES = 16
_MAX_CHAIN = 8
_MAX_VALUE = 4096

# The hub rejects an event whose attr string is over 16 KiB or whose message is over 256 KiB
# (obshub events.Limits); a rejected line is a lost line, so longer values are cut here instead.
# The len() pre-check keeps the common case at one comparison: a str of n chars is ≥ n bytes.
MAX_VALUE_BYTES = 16 * 1024 - 64
MAX_MESSAGE_BYTES = 256 * 1024 - 64
_CUT = "…[cut by obshub_sdk]"


def fit(text: str, limit: int) -> str:
    """``text`` if its UTF-8 form fits in ``limit`` bytes, else its longest prefix that does,
    marked as cut."""
    if len(text) * 4 <= limit:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    return raw[: limit - len(_CUT.encode())].decode("utf-8", "ignore") + _CUT


# --- timestamps -------------------------------------------------------------------------------

_ts_cache: tuple[int, str] = (-1, "")


def _prefix(sec: int) -> str:
    global _ts_cache
    cached = _ts_cache
    if cached[0] == sec:
        return cached[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    _ts_cache = (sec, text)  # one tuple assignment: atomic, so threads never see a torn pair
    return text


def ts_now() -> str:
    """Now as RFC 3339 UTC with microseconds and ``Z``."""
    sec, ns = divmod(time.time_ns(), 1_000_000_000)
    return f"{_prefix(sec)}.{ns // 1000:06d}Z"


def ts_from_float(created: float) -> str:
    """A ``time.time()`` float (``LogRecord.created``) in the same format."""
    sec = int(created)
    us = int((created - sec) * 1_000_000)
    return f"{_prefix(sec)}.{min(us, 999_999):06d}Z"


# --- error object -----------------------------------------------------------------------------

_LIBRARY_PREFIXES = tuple(
    {p for k in ("stdlib", "platstdlib", "purelib", "platlib") if (p := sysconfig.get_paths().get(k))}
)
_in_app_cache: dict[str, bool] = {}
_in_app_modules: tuple[str, ...] = ()


def set_in_app_modules(prefixes: tuple[str, ...]) -> None:
    """Module prefixes that are app code even when installed into site-packages (an app deployed
    with ``pip install``), as Sentry's ``in_app_include``."""
    global _in_app_modules
    _in_app_modules = tuple(prefixes)
    _in_app_cache.clear()


def _in_app(filename: str, module: str) -> bool:
    """App code is anything not in the stdlib, site-packages or this SDK (cached per file)."""
    known = _in_app_cache.get(filename)
    if known is None:
        known = any(module == p or module.startswith(p + ".") for p in _in_app_modules) or not (
            filename.startswith(_LIBRARY_PREFIXES)
            or filename.startswith("<")  # <frozen importlib._bootstrap>, <string>
            or "site-packages" in filename
            or "dist-packages" in filename
            or module.startswith("obshub_sdk")
        )
        if len(_in_app_cache) < 10_000:
            _in_app_cache[filename] = known
    return known


def _frames(tb: TracebackType | None) -> tuple[list[dict[str, Any]], int]:
    frames: list[dict[str, Any]] = []
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__") or "?"
        code = frame.f_code
        frames.append(
            {
                "module": module,
                "function": code.co_qualname,
                "filename": code.co_filename,
                "lineno": tb.tb_lineno,
                "in_app": _in_app(code.co_filename, module),
            }
        )
        tb = tb.tb_next
    omitted = 0
    if len(frames) > _MAX_FRAMES:
        omitted = len(frames) - _MAX_FRAMES
        frames = frames[:_HEAD_FRAMES] + frames[-(_MAX_FRAMES - _HEAD_FRAMES) :]
    return frames, omitted


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _value(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break logging
        text = f"<unprintable {type(exc).__name__}>"
    return text[:_MAX_VALUE]


def _one(exc: BaseException) -> dict[str, Any]:
    frames, omitted = _frames(exc.__traceback__)
    out: dict[str, Any] = {"type": _type_name(exc), "value": _value(exc), "stack": frames}
    if omitted:
        out["frames_omitted"] = omitted
    return out


def error_object(exc: BaseException) -> dict[str, Any]:
    """``{"type","value","stack":[frames oldest-first],["chain"]}`` for an exception.

    ``chain`` lists the exceptions behind this one, nearest first: the ``__cause__`` of
    ``raise X from Y`` (``"relation": "cause"``) or the ``__context__`` of an exception raised
    while handling another (``"relation": "context"``), each with its own type/value/stack.
    """
    out = _one(exc)
    chain: list[dict[str, Any]] = []
    seen = {id(exc)}
    cur = exc
    while len(chain) < _MAX_CHAIN:
        if cur.__cause__ is not None:
            nxt, relation = cur.__cause__, "cause"
        elif cur.__context__ is not None and not cur.__suppress_context__:
            nxt, relation = cur.__context__, "context"
        else:
            break
        if id(nxt) in seen:  # cycles are possible with hand-set __context__
            break
        seen.add(id(nxt))
        item = _one(nxt)
        item["relation"] = relation
        chain.append(item)
        cur = nxt
    if chain:
        out["chain"] = chain
    return out


def error_from_exc_info(exc_info: Any) -> dict[str, Any] | None:
    """Accepts what structlog and logging accept as ``exc_info``: True, an exception or a tuple."""
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        return error_object(exc_info)
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return error_object(exc_info[1])
    return None


# --- serialization ----------------------------------------------------------------------------


def _safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


# Built once: json.dumps(obj, **options) constructs a new JSONEncoder per call (~1.5 µs of the
# ~6.5 µs a line cost on the bench VM). ASCII output (non-ASCII as \uXXXX) is slightly faster and
# can never produce bytes a reader fails to decode.
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))


def _dumps_stdlib(line: dict[str, Any]) -> bytes:
    return (_ENCODER.encode(line) + "\n").encode("ascii")


if _orjson is not None:
    _OPTS = _orjson.OPT_APPEND_NEWLINE | _orjson.OPT_NON_STR_KEYS
    _fast: Callable[[dict[str, Any]], bytes] = lambda line: _orjson.dumps(line, default=str, option=_OPTS)  # noqa: E731
else:
    _fast = _dumps_stdlib


def dumps(line: dict[str, Any]) -> bytes:
    """One JSON line, newline included. Never raises: odd values become strings."""
    try:
        return _fast(line)
    except Exception:  # e.g. ints past 64 bit for orjson, tuple keys for json, broken __str__
        try:
            return _dumps_stdlib(_safe(line))
        except Exception:
            return _dumps_stdlib(
                {"ts": line.get("ts"), "level": line.get("level"), "message": "<unserializable log line>"}
            )


# --- sink -------------------------------------------------------------------------------------


class Sink:
    """Where lines go: a file path (opened for append, unbuffered), a binary or text stream, or
    ``None`` for whatever ``sys.stdout`` is at write time (so test capture and redirection work).

    Each line is written and flushed under a lock: lines from threads never interleave, and a
    tailing agent sees a line as soon as the log call returns.
    """

    def __init__(self, target: str | Any | None) -> None:
        self._lock = threading.Lock()
        self._owned: IO[bytes] | None = None
        self._stream: Any = None
        self._text = True
        self.dropped = 0
        self.closed = False  # retired by its owner (configure() replacing it): nothing writes here any more
        if target is None:
            return
        if hasattr(target, "write"):
            self._stream = target
            self._text = not _is_binary(target)
        else:
            parent = os.path.dirname(target)
            if parent:
                os.makedirs(parent, exist_ok=True)
            self._owned = open(target, "ab", buffering=0)  # noqa: SIM115 - closed by close()
            self._stream = self._owned
            self._text = False

    def write(self, line: bytes) -> None:
        stream: Any = self._stream if self._stream is not None else sys.stdout
        if stream is None:  # pythonw / daemon with no stdout: nowhere to write
            return
        try:
            with self._lock:
                if self._text:
                    stream.write(line.decode("utf-8", "replace"))
                    stream.flush()
                elif self._owned is not None:
                    view = memoryview(line)
                    while view:  # FileIO.write may write less than asked
                        written = self._owned.write(view)
                        view = view[written or len(view) :]
                else:
                    stream.write(line)
                    stream.flush()
        except (OSError, ValueError):
            # Disk full, closed at interpreter shutdown, broken pipe: a log call must not take
            # the app down. Counted so a health check can notice.
            self.dropped += 1

    def close(self) -> None:
        """Only the sink's owner calls this (configure() when it replaces it), never a handler:
        structlog and the stdlib handler share one sink."""
        self.closed = True
        if self._owned is not None:
            with self._lock:
                self._owned.close()


def _is_binary(stream: Any) -> bool:
    import io

    if isinstance(stream, io.TextIOBase):
        return False
    if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        return True
    return "b" in getattr(stream, "mode", "")

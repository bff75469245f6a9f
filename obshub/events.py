"""The event schema: one function turns whatever a client sent into a normalized event.

Every signal (log line, error, analytics event, uptime result) is the same flat record so one
query on a correlation key finds all of them. This module is the only place that knows the
aliases, the level vocabulary and the timestamp forms of docs/api.md; it has no heavy imports
because the ingest hot path calls `normalize` once per line (budget: a few µs).

A normalized event is a plain dict (dicts are ~3x cheaper to build than dataclasses at 30k/s),
typed as `NormalizedEvent` (a TypedDict: the same dict, its keys checked by mypy):

    id, ts (int µs since epoch, UTC), received_at (int µs), kind, level, message, service, host,
    env, release, logger, request_id, trace_id, span_id, user_id, session_id, name,
    error (dict | None), group_id (set by digest/ for errors), attrs (flat dict: nested keys
    joined with "."), and transiently `fingerprint` (client grouping hint, consumed by digest/)

Stores keep `ts` as integer microseconds (exact, sortable); `to_public` renders RFC 3339.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict, cast

from obshub.errors import FieldError

__all__ = [
    "CORRELATION_KEYS",
    "KINDS",
    "LEVELS",
    "RESERVED_ID_PREFIXES",
    "RESERVED_KINDS",
    "STRING_FIELDS",
    "TOP_LEVEL_FIELDS",
    "Limits",
    "NormalizedEvent",
    "format_ts",
    "new_id",
    "normalize",
    "normalize_level",
    "now_us",
    "parse_ts",
    "to_public",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
KINDS = ("log", "error", "event", "check", "span")  # span: one OTLP span (obshub/ingest/otlp/)
# What only the hub writes (obshub/uptime/: probe results `check:<project>:<name>:<slot>`,
# definitions `checkdef:<project>:<name>:<µs>`, both kind=check). A client that could write them
# could show a check down, or take the id of a result the hub has yet to write (the store keeps
# the first writer of an id), so `normalize` refuses them unless the hub itself calls it (`own`).
RESERVED_KINDS = ("check",)
RESERVED_ID_PREFIXES = ("check:", "checkdef:")
CORRELATION_KEYS = ("request_id", "trace_id", "span_id", "user_id", "session_id")
# Plain string fields besides the correlation keys.
_META_FIELDS = ("service", "host", "env", "release", "logger", "name")
STRING_FIELDS = ("message", *_META_FIELDS, *CORRELATION_KEYS)
TOP_LEVEL_FIELDS = ("id", "ts", "received_at", "kind", "level", *STRING_FIELDS, "error", "group_id", "attrs")

# Alias -> canonical field. The canonical name wins when both are present; the alias is then
# kept in attrs (nothing the client sent is dropped).
_ALIASES = {
    "msg": "message",
    "event": "message",  # structlog's key for the message
    "@message": "message",
    "levelname": "level",
    "severity": "level",
    "@timestamp": "ts",
    "time": "ts",
    "timestamp": "ts",
}

_LEVEL_MAP = {
    # python logging, log4j, java.util.logging, syslog names, common shorthands
    "debug": "debug",
    "trace": "debug",
    "verbose": "debug",
    "fine": "debug",
    "finer": "debug",
    "finest": "debug",
    "notset": "debug",
    "d": "debug",
    "v": "debug",
    "dbg": "debug",
    "info": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "config": "info",
    "i": "info",
    "inf": "info",
    "warning": "warning",
    "warn": "warning",
    "w": "warning",
    "wrn": "warning",
    "error": "error",
    "err": "error",
    "severe": "error",
    "e": "error",
    "exception": "error",
    "critical": "critical",
    "crit": "critical",
    "fatal": "critical",
    "emerg": "critical",
    "emergency": "critical",
    "alert": "critical",
    "panic": "critical",
    "f": "critical",
    "a": "critical",
}
# syslog severities 0-7 (RFC 5424) and python's numeric levels 10..50.
_NUMERIC_LEVELS = {
    0: "critical",
    1: "critical",
    2: "critical",
    3: "error",
    4: "warning",
    5: "info",
    6: "info",
    7: "debug",
    10: "debug",
    20: "info",
    30: "warning",
    40: "error",
    50: "critical",
}

_ID_MAX = 128
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Accepted event times: 1970 .. 2200. Outside that a number is almost surely a unit mistake.
_TS_MIN_US = 0
_TS_MAX_US = 7_258_118_400_000_000
_US_EPOCH_MIN = 100_000_000_000_000  # an epoch number from here to 1e17 is µs (parse_ts)
_TS_TEXT_MAX = 64  # the longest RFC 3339 text (nanoseconds, an offset) is 35 characters


class NormalizedEvent(TypedDict):
    """What `normalize` returns, and what digest/ and the store writes take."""

    id: str
    ts: int  # µs since the epoch, UTC
    received_at: int  # µs; 0 only for check definitions (obshub/uptime/: ingest never makes a 0)
    kind: str  # one of KINDS
    level: str  # one of LEVELS
    message: str | None
    service: str | None
    host: str | None
    env: str | None
    release: str | None
    logger: str | None
    name: str | None
    request_id: str | None
    trace_id: str | None
    span_id: str | None
    user_id: str | None
    session_id: str | None
    error: dict[str, Any] | None
    group_id: str | None  # set by digest/ for an error occurrence
    attrs: dict[str, Any]  # flat: nested keys joined with "."
    fingerprint: NotRequired[list[str]]  # the client's grouping hint; digest/ consumes it


@dataclass(frozen=True)
class Limits:
    """Bounds on one event. Violations reject the event with a reason; nothing is cut silently."""

    max_attr_keys: int = 256  # flattened keys per event; a noisy app must not explode the mapping
    max_attr_depth: int = 8  # nesting levels inside attrs
    max_value_bytes: int = 16 * 1024  # one attr value (strings; lists by total length)
    max_message_bytes: int = 256 * 1024  # a long stack trace fits; a log-a-file mistake does not
    max_key_bytes: int = 128  # one flattened attr key
    # The error object is free-form JSON (Sentry's request, contexts, extra, breadcrumbs, frame
    # variables): bounded so one event can neither break a shared store write (a serializer's
    # recursion limit: orjson stops at 254 levels) nor fill a row. Sentry's own events nest ~8 deep.
    max_error_depth: int = 32  # nesting levels, the error object itself being level 1
    max_error_bytes: int = 1024 * 1024  # strings and keys inside the error, ~bytes (Relay: 1 MiB per event)


DEFAULT_LIMITS = Limits()


def new_id() -> str:
    """A random 128-bit id for events sent without one (32 hex chars)."""
    return os.urandom(16).hex()


def now_us() -> int:
    """Now, in integer µs since the epoch (exact: no float rounding)."""
    return time.time_ns() // 1_000


def format_ts(us: int) -> str:
    """RFC 3339, UTC, always 6 fraction digits: fixed width, so strings sort like times."""
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: Any, field: str = "ts") -> int:
    """RFC 3339 / ISO 8601 text or an epoch number in s, ms, µs or ns -> µs since epoch.

    Units of a number are inferred from its magnitude (the forms apps really send): below 1e11
    it is seconds (until year 5138), below 1e14 milliseconds, below 1e17 microseconds, else ns.
    Text without an offset is taken as UTC.
    """
    if type(value) is int and _US_EPOCH_MIN <= value <= _TS_MAX_US:
        return value  # already µs (the rule below), the common case: no further calls
    if isinstance(value, bool):
        raise FieldError(field, "expected RFC 3339 text or an epoch number, got a boolean")
    if isinstance(value, (int, float)):
        return _epoch_to_us(value, field)
    if not isinstance(value, str):
        raise FieldError(field, f"expected RFC 3339 text or an epoch number, got {type(value).__name__}")
    second = value[:19] if len(value) == 27 and value[19] == "." and value[26] == "Z" else None  # the SDKs' form
    if second is not None:
        sec = _SECONDS.get(second)
        frac = value[20:26]
        if sec is not None and frac.isascii() and frac.isdigit():
            return sec + int(frac)
    text = value.strip()
    if not text:
        raise FieldError(field, "empty timestamp")
    if len(text) > _TS_TEXT_MAX:  # (int() of a 5,000-digit text raised a ValueError: a 500)
        raise FieldError(field, f"{value[:40]!r}... is too long for a timestamp ({len(text)} characters)")
    if text[0].isdigit() and _NUMERIC_RE.fullmatch(text):
        return _epoch_to_us(float(text) if "." in text else int(text), field)
    try:
        dt = datetime.fromisoformat(text.upper() if text[-1] in "zZ" or "t" in text else text)
    except ValueError:
        raise FieldError(field, f"cannot parse {value[:40]!r} as RFC 3339 or an epoch number") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    us = (dt - _EPOCH) // timedelta(microseconds=1)
    if not _TS_MIN_US <= us <= _TS_MAX_US:
        raise FieldError(field, f"{value[:40]!r} is outside 1970..2200")
    if second is not None and text == value:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        _SECONDS[second] = us - us % 1_000_000
    return us


# "YYYY-MM-DDTHH:MM:SS" -> its µs since the epoch, for texts in exactly the form the SDKs write
# ("...SS.ffffffZ"). Lines of one batch share their second, and parsing a date is ~2 µs of the
# ~5 µs `normalize` costs per line; the first text of each second takes the full path above.
_SECONDS: dict[str, int] = {}


_NUMERIC_RE = re.compile(r"\d+(\.\d+)?")


def _epoch_to_us(n: float, field: str) -> int:
    if isinstance(n, float) and not math.isfinite(n):
        raise FieldError(field, "timestamp is not a finite number")
    a = abs(n)
    if a < 1e11:
        us = round(n * 1_000_000)
    elif a < _US_EPOCH_MIN:
        us = round(n * 1_000)
    elif a < 1e17:
        us = int(n)
    else:
        us = int(n) // 1_000
    if not _TS_MIN_US <= us <= _TS_MAX_US:
        raise FieldError(field, f"epoch {n!r} is outside 1970..2200")
    return us


def normalize_level(value: Any) -> str:
    """Map python/syslog/log4j/shorthand levels onto LEVELS; unknown values are an error."""
    if isinstance(value, str):
        lv = _LEVEL_MAP.get(value.strip().lower())
        if lv is not None:
            return lv
        v = value.strip()
        if v.isascii() and v.isdigit() and len(v) <= 3:  # int() refuses `²` and 4,300+ digits
            value = int(v)
        else:
            raise FieldError("level", f"unknown level {value[:32]!r} (expected one of {', '.join(LEVELS)})")
    if isinstance(value, int) and not isinstance(value, bool) and value in _NUMERIC_LEVELS:
        return _NUMERIC_LEVELS[value]
    raise FieldError("level", f"unknown level {value!r} (syslog 0-7, python 10-50 or a name)")


def _as_text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise FieldError(field, f"expected a string, got {type(value).__name__}")


# The normalized event's fields in their order, before `fingerprint` and `attrs`. `kind` and
# `level` are None here so that a client's explicit null reads as "not given", like an absent key.
_BASE: dict[str, Any] = {
    "id": None,
    "ts": None,
    "received_at": None,
    "kind": None,
    "level": None,
    "message": None,
    "service": None,
    "host": None,
    "env": None,
    "release": None,
    "logger": None,
    "name": None,
    "request_id": None,
    "trace_id": None,
    "span_id": None,
    "user_id": None,
    "session_id": None,
    "error": None,
    "group_id": None,
}


def normalize(raw: Any, received_at: int, limits: Limits = DEFAULT_LIMITS, own: bool = False) -> NormalizedEvent:
    """Validate one client object and return the normalized event (see module docstring).
    `own`: the hub's own event (uptime results and definitions), which may use the reserved
    kinds and id prefixes (RESERVED_KINDS, RESERVED_ID_PREFIXES); a client's may not."""
    if not isinstance(raw, dict):
        raise FieldError("event", f"each line must be a JSON object, got {type(raw).__name__}")
    # One C-level merge onto the defaults builds the event, not a get per field: this function is
    # the hub's largest CPU cost per event (~4.1 -> ~2.6 µs per line; docs/performance.md).
    if _PLAIN_KEYS.issuperset(raw):
        # The common case (agents and SDKs send canonical names): nothing to rename or move.
        out = {**_BASE, **raw}
        extra = None
    else:
        ev, extra = _sort_keys(raw)
        out = {**_BASE, **ev}
    attrs_in = out.pop("attrs", None)
    fp = out.pop("fingerprint", None)
    for f in STRING_FIELDS:
        v = out[f]
        if v is not None and type(v) is not str:
            out[f] = _as_text(v, f)
    return _complete(out, attrs_in, extra, fp, received_at, limits, own, flat=False)


def _complete(
    out: dict[str, Any],
    attrs_in: Any,
    extra: dict[str, Any] | None,
    fp: Any,
    received_at: int,
    limits: Limits,
    own: bool,
    flat: bool,
) -> NormalizedEvent:
    """The rest of `normalize`, once `out` holds the canonical fields with strings as text:
    defaults, the checks of id, ts, level, message, error, fingerprint and kind, and attrs.
    `flat`: `attrs_in` is already a flat dict within the limits (obshub/typed_line.py checked it)."""
    v = out["id"]
    if v is None:
        out["id"] = new_id()
    elif not isinstance(v, str) or not v or len(v) > _ID_MAX:
        raise FieldError("id", f"must be a non-empty string of at most {_ID_MAX} characters")
    elif not own and v.startswith(RESERVED_ID_PREFIXES):
        prefix = next(p for p in RESERVED_ID_PREFIXES if v.startswith(p))
        raise FieldError("id", f"ids starting with {prefix!r} are reserved for the hub's uptime checks")
    v = out["ts"]
    out["ts"] = received_at if v is None else parse_ts(v)
    out["received_at"] = received_at
    level = out["level"]
    if level is None:
        out["level"] = "info"
    else:
        out["level"] = (type(level) is str and _LEVEL_MAP.get(level)) or normalize_level(level)
    msg = out["message"]
    if msg is not None and len(msg) > limits.max_message_bytes // 4 and len(msg.encode()) > limits.max_message_bytes:
        raise FieldError("message", f"{len(msg.encode())} bytes exceeds the limit of {limits.max_message_bytes}")
    v = out["error"]
    if v is not None:
        out["error"] = _check_error(v, limits)
    if fp is not None:
        if not isinstance(fp, list) or not fp or not all(isinstance(x, (str, int)) for x in fp) or len(fp) > 16:
            raise FieldError("fingerprint", 'must be a list of 1-16 strings ("{{ default }}" expands to the default)')
        out["fingerprint"] = [str(x) for x in fp]
    kind = out["kind"]
    if kind is not None:
        if kind not in KINDS:
            raise FieldError("kind", f"unknown kind {str(kind)[:32]!r} (expected one of {', '.join(KINDS)})")
        if not own and kind in RESERVED_KINDS:
            raise FieldError("kind", f"kind={kind} is reserved for the hub's uptime checks")
    elif out["error"] is not None:
        out["kind"] = kind = "error"  # a log call with exception info is an error occurrence
    else:
        out["kind"] = kind = "log"
    if kind == "error":
        if out["error"] is None and msg is None:
            raise FieldError("error", "an error event needs an `error` object or a `message`")
        if level is None:
            out["level"] = "error"
        if msg is None and out["error"] is not None:
            err = out["error"]
            out["message"] = f"{err.get('type') or 'Error'}: {err.get('value') or ''}".rstrip(": ")
    elif kind == "event" and out["name"] is None:
        if msg is None:
            raise FieldError("name", "an analytics event (kind=event) needs a `name`")
        out["name"] = msg

    if flat:
        out["attrs"] = attrs_in if attrs_in is not None else {}
        return cast(NormalizedEvent, out)
    attrs: dict[str, Any] = {}
    if attrs_in is not None:
        if not isinstance(attrs_in, dict):
            raise FieldError("attrs", f"must be an object, got {type(attrs_in).__name__}")
        _flatten(attrs_in, "", 1, attrs, limits)
    if extra:
        moved: dict[str, Any] = {}
        _flatten(extra, "", 1, moved, limits)
        for k, v in moved.items():
            if k in attrs:
                raise FieldError(f"attrs.{k}", "given both at the top level and inside attrs")
            attrs[k] = v
    if len(attrs) > limits.max_attr_keys:
        raise FieldError("attrs", f"{len(attrs)} keys (after flattening) exceeds the limit of {limits.max_attr_keys}")
    out["attrs"] = attrs
    return cast(NormalizedEvent, out)  # built as a plain dict: one merge onto _BASE (see above)


_KNOWN = frozenset(("id", "ts", "kind", "level", "error", "fingerprint", *STRING_FIELDS))
_PLAIN_KEYS = _KNOWN | {"attrs"}


def _sort_keys(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resolve aliases: (canonical fields with a value and `attrs`, keys that go to attrs)."""
    ev: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        canon = _ALIASES.get(key, key)
        if canon in ev or (canon != key and canon in raw):
            extra[key] = value  # alias shadowed by the canonical key: keep it, in attrs
            continue
        if canon == "attrs" or (canon in _KNOWN and value is not None):
            ev[canon] = value
        elif canon not in _KNOWN:
            extra[key] = value
    return ev, extra


def _flatten(obj: dict[str, Any], prefix: str, depth: int, out: dict[str, Any], limits: Limits) -> None:
    if depth > limits.max_attr_depth:
        raise FieldError(f"attrs.{prefix.rstrip('.')}", f"nested deeper than the limit of {limits.max_attr_depth}")
    max_key = limits.max_key_bytes
    for k, v in obj.items():
        key = prefix + k if prefix else k
        if isinstance(v, dict):
            if v:
                _flatten(v, key + ".", depth + 1, out, limits)
            continue
        if len(key) > max_key:
            raise FieldError(f"attrs.{key[:40]}...", f"key longer than {max_key} bytes")
        if isinstance(v, str):
            if len(v) > limits.max_value_bytes // 4 and len(v.encode()) > limits.max_value_bytes:
                raise FieldError(
                    f"attrs.{key}", f"value of {len(v.encode())} bytes exceeds the limit of {limits.max_value_bytes}"
                )
        elif isinstance(v, list):
            size = sum(len(x) if isinstance(x, str) else 8 for x in v)
            if size > limits.max_value_bytes:
                raise FieldError(f"attrs.{key}", f"list of ~{size} bytes exceeds the limit of {limits.max_value_bytes}")
            if any(isinstance(x, (dict, list)) for x in v):
                raise FieldError(f"attrs.{key}", "lists may hold only scalars (send objects as nested keys)")
        elif isinstance(v, float) and not math.isfinite(v):
            raise FieldError(f"attrs.{key}", "number is not finite")
        out[key] = v


def _check_error(err: Any, limits: Limits) -> dict[str, Any]:
    """Shape-check the structured error and bound its depth and size; its content is
    fingerprinted later in digest/."""
    if isinstance(err, str):
        if len(err) > limits.max_error_bytes // 4 and len(err.encode()) > limits.max_error_bytes:
            raise FieldError("error", f"{len(err.encode())} bytes exceeds the limit of {limits.max_error_bytes}")
        return {"type": None, "value": err, "stack": None}
    if not isinstance(err, dict):
        raise FieldError("error", f"must be an object, got {type(err).__name__}")
    _bound_error(err, limits)
    for k in ("type", "value"):
        if k in err and err[k] is not None and not isinstance(err[k], str):
            err[k] = str(err[k])
    stack = err.get("stack")
    if stack is not None and not isinstance(stack, (str, list)):
        raise FieldError("error.stack", "must be a list of frames or traceback text")
    if isinstance(stack, list):
        for i, fr in enumerate(stack):
            if not isinstance(fr, dict):
                raise FieldError(f"error.stack[{i}]", "each frame must be an object")
    return err


def _bound_error(err: dict[str, Any], limits: Limits) -> None:
    """FieldError naming the top-level key of `error` under which the object nests deeper than
    `max_error_depth` or whose strings and keys add up past `max_error_bytes` (characters are
    counted, a cheap lower bound of UTF-8 bytes: ~2 µs for a 5 KB Sentry error)."""
    max_depth, budget = limits.max_error_depth, limits.max_error_bytes
    size = 0
    for key, value in err.items():
        size += len(key) if type(key) is str else 8
        if type(value) is str:
            size += len(value)
        elif type(value) is dict or type(value) is list:
            n = _size_within(value, 2, max_depth)
            if n < 0:
                raise FieldError(f"error.{key}", f"nested deeper than {max_depth} levels")
            size += n
        else:
            size += 8
        if size > budget:
            raise FieldError(f"error.{key}", f"the error object exceeds the limit of {budget} bytes")


def _size_within(obj: dict[str, Any] | list[Any], depth: int, max_depth: int) -> int:
    """Characters of the strings and keys in `obj` (8 per other scalar), or -1 if it nests
    deeper than `max_depth` (`obj` being at level `depth`)."""
    if depth > max_depth:
        return -1
    size = 0
    values = obj.values() if type(obj) is dict else obj
    if type(obj) is dict:
        size += sum(len(k) if type(k) is str else 8 for k in obj)
    for v in values:
        if type(v) is str:
            size += len(v)
        elif type(v) is dict or type(v) is list:
            n = _size_within(v, depth + 1, max_depth)
            if n < 0:
                return -1
            size += n
        else:
            size += 8
    return size


def to_public(ev: dict[str, Any]) -> dict[str, Any]:
    """The API/CLI shape of a stored event: times as RFC 3339, empty fields omitted."""
    out = {k: v for k, v in ev.items() if v is not None and v != {}}
    out["ts"] = format_ts(ev["ts"])
    if ev.get("received_at") is not None:
        out["received_at"] = format_ts(ev["received_at"])
    return out

"""One NDJSON line in one typed pass (obshub/ingest/native.py): `normalize` for the lines agents
and SDKs send, checked by msgspec while it parses. Beside obshub/events.py, whose `_complete`
finishes every line this pass does not finish itself."""

from __future__ import annotations

from typing import Annotated, Any, cast

import msgspec

from obshub.events import (
    _ID_MAX,
    _LEVEL_MAP,
    _TS_MAX_US,
    _US_EPOCH_MIN,
    DEFAULT_LIMITS,
    RESERVED_ID_PREFIXES,
    STRING_FIELDS,
    Limits,
    NormalizedEvent,
    _complete,
    new_id,
    parse_ts,
)

__all__ = ["decode_line"]

# -- one NDJSON line in one typed pass ------------------------------------------------------------
#
# `decode_line` is `normalize(orjson.loads(line))` for the lines agents and SDKs send: canonical
# keys only, string fields as strings, attrs flat (scalars) within the limits, no `error` or
# `fingerprint`. msgspec checks all of that while it parses, in C, so what is left in Python is
# what every line needs (id, ts, level, kind): ~4.5 -> ~2.3 µs per line (docs/performance.md).
# Any other line (an alias, an extra key, nested or list attrs, a number as a string field, a
# value past a bound, invalid JSON) is None here and goes the general way, which gives the
# same event or the same error as before: the typed pass only takes lines it can take whole.

# orjson reads integers from -2**63 to 2**64-1 as int, others as float; msgspec keeps them whole.
# Past int64 (msgspec bounds stop there), the general way.
_JSON_INT = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_LINE_FIELDS = ("id", "ts", "kind", "level", *STRING_FIELDS, "error", "fingerprint", "attrs")


def _line_type(limits: Limits) -> type[msgspec.Struct]:
    key = Annotated[str, msgspec.Meta(max_length=limits.max_key_bytes)]
    # _flatten's bound is in UTF-8 bytes; a string of at most a quarter as many characters is
    # within it whatever it holds. Longer ones take the general way, which counts the bytes.
    text = Annotated[str, msgspec.Meta(max_length=limits.max_value_bytes // 4)]
    value = text | _JSON_INT | float | bool | None  # a float is finite: JSON has no inf or NaN
    attrs = Annotated[dict[key, value], msgspec.Meta(max_length=limits.max_attr_keys)] | None
    types: dict[str, Any] = {
        "id": Annotated[str, msgspec.Meta(min_length=1, max_length=_ID_MAX)] | None,
        "ts": _JSON_INT | float | str | None,
        "kind": str | None,
        "level": str | _JSON_INT | None,
        **dict.fromkeys(STRING_FIELDS, str | None),
        "error": None,  # only null here: an error object takes the general way
        "fingerprint": None,
        "attrs": attrs,
    }
    fields = [(f, types[f], None) for f in _LINE_FIELDS]
    return msgspec.defstruct("Line", fields, forbid_unknown_fields=True)


_LINE_DECODERS: dict[Limits, msgspec.json.Decoder[Any]] = {}


def decode_line(line: bytes, received_at: int, limits: Limits = DEFAULT_LIMITS) -> NormalizedEvent | None:
    """`normalize` of one JSON line in the common form (see above): the event, or the same
    FieldError. None for any other line: `normalize(orjson.loads(line), ...)` has its answer."""
    decoder = _LINE_DECODERS.get(limits)
    if decoder is None:
        decoder = _LINE_DECODERS[limits] = msgspec.json.Decoder(_line_type(limits))
    try:
        t = decoder.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    (
        id_,
        ts,
        kind,
        level,
        message,
        service,
        host,
        env,
        release,
        logger,
        name,
        request_id,
        trace_id,
        span_id,
        user_id,
        session_id,
        _error,
        _fingerprint,
        attrs,
    ) = msgspec.structs.astuple(t)
    out = {
        "id": id_,
        "ts": ts,
        "received_at": None,
        "kind": kind,
        "level": level,
        "message": message,
        "service": service,
        "host": host,
        "env": env,
        "release": release,
        "logger": logger,
        "name": name,
        "request_id": request_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "user_id": user_id,
        "session_id": session_id,
        "error": None,
        "group_id": None,
    }
    # A plain log line, the most common by far, is finished right here; the same checks as
    # `_complete`'s, in the order it makes them. Anything else goes through `_complete`.
    lv = "info" if level is None else _LEVEL_MAP.get(level) if type(level) is str else None
    if (
        lv is not None
        and (kind is None or kind == "log")
        and (id_ is None or not id_.startswith(RESERVED_ID_PREFIXES))
        and (message is None or len(message) <= limits.max_message_bytes // 4)
    ):
        if ts is None:
            ts = received_at
        elif type(ts) is not int or not _US_EPOCH_MIN <= ts <= _TS_MAX_US:
            ts = parse_ts(ts)
        # the keys keep their order (the stored document's): `attrs` comes last, as `_complete` puts it
        out.update(id=id_ if id_ is not None else new_id(), ts=ts, received_at=received_at, kind="log", level=lv)
        out["attrs"] = attrs if attrs is not None else {}
        return cast(NormalizedEvent, out)
    return _complete(out, attrs, None, None, received_at, limits, False, flat=True)

"""A JSON document from another product's shipper -> obshub event fields: Elasticsearch bulk
documents (obshub/ingest/es.py) and the JSON lines of a Loki push (obshub/ingest/loki.py: Fluent
Bit's `Line_Format json`, Promtail and Alloy shipping JSON logs) are the same kind of object, so
they map one way: ECS names first (`log.level`, `trace.id`, `user.id`), then the common ones
(`level`, `msg`, `request_id`)."""

from __future__ import annotations

from typing import Any

import orjson

from obshub.errors import FieldError
from obshub.events import CORRELATION_KEYS, normalize_level

__all__ = ["PATHS", "from_document", "from_line"]

# Document field (a dotted path, nested objects or a literal dotted key) -> event field: the
# first one present wins; the others stay in attrs. ECS names first, then the common ones.
PATHS: dict[str, tuple[str, ...]] = {
    "ts": ("@timestamp", "timestamp", "time"),
    "message": ("message", "msg", "log", "@message"),
    "level": ("log.level", "level", "severity", "syslog.severity_label", "levelname"),
    "host": ("host.name", "host.hostname", "host", "hostname"),
    "service": ("service.name", "service"),
    "env": ("service.environment", "deployment.environment", "env", "environment"),
    "release": ("service.version", "release"),
    "logger": ("log.logger", "logger", "logger_name"),
    "trace_id": ("trace.id", "trace_id", "traceId"),
    "span_id": ("span.id", "span_id", "spanId"),
    "request_id": ("http.request.id", "request_id", "request.id"),
    "user_id": ("user.id", "user_id"),
    "session_id": ("session.id", "session_id"),
}
assert set(CORRELATION_KEYS) <= set(PATHS)


def _take(doc: dict[str, Any], path: str) -> Any:
    """Remove and return the scalar at `path` (a literal key, or nested objects), None if absent
    or not a scalar (an ECS `host` object is not a host name: `host.name` is)."""
    value = doc.get(path)
    if value is not None and not isinstance(value, (dict, list)):
        del doc[path]
        return value
    head, dot, rest = path.partition(".")
    inner = doc.get(head) if dot else None
    if not isinstance(inner, dict):
        return None
    value = _take(inner, rest)
    if value is not None and not inner:
        del doc[head]  # nothing left of the object: no empty key in attrs
    return value


def from_document(doc: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The document -> an obshub event (client form, validated later by `normalize`): the fields
    of PATHS (except those in `skip`), an ECS `error` object as the error, everything else in
    `attrs`. A level only the sender knows stays in attrs (`log.level`): not a reason to drop
    the line."""
    rest = dict(doc)
    out: dict[str, Any] = {}
    for name, paths in PATHS.items():
        if name in skip:
            continue
        for path in paths:
            value = _take(rest, path)
            if value is None:
                continue
            if name in out:
                rest[path] = value  # a second source of the same field: kept, in attrs
            else:
                out[name] = value
    level = out.get("level")
    if level is not None:
        try:
            normalize_level(level)
        except FieldError:
            rest["log.level"] = out.pop("level")
    if isinstance(out.get("message"), (int, float)) and not isinstance(out["message"], bool):
        out["message"] = str(out["message"])
    err = rest.pop("error", None)
    if isinstance(err, dict):  # ECS: error.type, error.message, error.stack_trace
        out["error"] = {
            "type": err.get("type"),
            "value": err.get("message"),
            "stack": err.get("stack_trace") if isinstance(err.get("stack_trace"), str) else None,
        }
        extra = {k: v for k, v in err.items() if k not in ("type", "message", "stack_trace")}
        if extra:
            rest["error"] = extra
    elif isinstance(err, str):
        out["error"] = err
    elif err is not None:
        rest["error"] = err
    out["attrs"] = rest
    return out


def from_line(line: str) -> dict[str, Any] | None:
    """A log line that is one JSON object -> its event fields (as `from_document`, the time
    left to the sender's own timestamp); None for any other line (kept as the message). A JSON
    line without a message field keeps the whole line as its message."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    out = from_document(doc, skip=("ts",))
    if not isinstance(out.get("message"), str):
        if "message" in out:
            out["attrs"]["message"] = out.pop("message")
        out["message"] = line
    return out

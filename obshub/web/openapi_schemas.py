"""The reusable parts of the OpenAPI document (`components`): JSON Schema 2020-12 for what the
routes take and answer, parameters and error answers shared by several routes.

Bounds and enums come from the code that enforces them (`obshub.events`, `obshub.query.*`), so
the document changes with the code. Answers the hub builds with fixed keys are closed
(`additionalProperties: false`): a field added to an answer but not here fails the conformance
test (tests/test_openapi.py) and the fuzz run instead of going undocumented.
"""

from __future__ import annotations

from typing import Any

from obshub.events import KINDS, LEVELS, STRING_FIELDS
from obshub.query.aggregate import AUTO_BUCKETS, MAX_BUCKETS, MAX_CELLS, MAX_TOP
from obshub.query.errors import GROUP_STATES
from obshub.query.export import FORMATS, MAX_COLUMNS
from obshub.query.metrics import DEFAULT_GROUPS, MAX_GROUPS, MAX_SERIES_BUCKETS
from obshub.query.search import MAX_DEPTH, MAX_LIMIT, MAX_TERMS, TIMELINE_LIMIT, TIMELINE_MAX_LIMIT
from obshub.query.times import MAX_INTERVAL_US
from obshub.uptime.model import DEFAULT_INTERVAL_S, DEFAULT_TIMEOUT_S, MAX_INTERVAL_S, MAX_TIMEOUT_S, MIN_INTERVAL_S

__all__ = ["COMPONENTS", "ref"]

Schema = dict[str, Any]


def ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _obj(
    props: dict[str, Schema], required: tuple[str, ...] | None = None, closed: bool = True, **extra: Any
) -> Schema:
    """An object; every property is required unless `required` says otherwise."""
    out: Schema = {"type": "object", "properties": props, "required": list(props if required is None else required)}
    if closed:
        out["additionalProperties"] = False
    return {**out, **extra}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


_STR: Schema = {"type": "string"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_STRINGS: Schema = {"type": "array", "items": _STR}
# format_ts: RFC 3339 in UTC with exactly six fraction digits, so times sort as strings.
_TIME: Schema = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$",
    "examples": ["2026-11-23T19:14:02.123456Z"],
}
_SCALAR: Schema = {"type": ["string", "number", "boolean", "null"]}
_ATTR_VALUE: Schema = {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]}

# -- events -----------------------------------------------------------------------------------

_EVENT: Schema = _obj(
    {
        "id": _STR,
        "ts": ref("Time"),
        "received_at": ref("Time"),
        "kind": {"enum": list(KINDS)},
        "level": {"enum": list(LEVELS)},
        **{f: _STR for f in STRING_FIELDS},
        "error": {
            "type": "object",
            "description": "as stored: parsed (`type`, `value`, `stack` of frames, …) and scrubbed",
        },
        "group_id": _STR,
        "attrs": {
            "type": "object",
            "description": "flat: nested keys joined with dots",
            "additionalProperties": _ATTR_VALUE,
        },
    },
    required=("id", "ts", "received_at", "kind", "level"),
    description="An event as stored, empty fields left out (docs/api.md, Event object).",
)

_EPOCH_OR_TEXT: Schema = {"type": ["string", "number"]}
_EVENT_IN: Schema = _obj(
    {
        "id": {"type": "string", "minLength": 1, "maxLength": 128, "description": "idempotency key"},
        "ts": {
            **_EPOCH_OR_TEXT,
            "description": "RFC 3339 text or an epoch number (s, ms, µs or ns by magnitude), "
            "1970-2200; absent: the receive time",
        },
        "kind": {"enum": list(KINDS)},
        "level": {
            "type": ["string", "integer"],
            "description": "one of debug, info, warning, error, critical, or "
            "an alias or syslog/Python number (docs/api.md)",
        },
        **{f: {"type": ["string", "number"]} for f in STRING_FIELDS},
        "error": {"type": ["object", "string"]},
        "fingerprint": {"type": "array", "minItems": 1, "maxItems": 16, "items": {"type": ["string", "integer"]}},
        "attrs": {"type": "object"},
    },
    required=(),
    closed=False,
    description="One line of an NDJSON batch. Other top-level keys land in `attrs`; `null` is the same as "
    "absent. A line that breaks a rule is rejected on its own (see `rejected`).",
)

# -- answers ----------------------------------------------------------------------------------

_INGEST_ANSWER = _obj(
    {
        "accepted": _COUNT,
        "duplicates": _COUNT,
        "rejected": {"type": "array", "items": _obj({"line": {"type": "integer", "minimum": 1}, "error": _STR})},
    }
)

_SEARCH_PAGE = _obj({"events": {"type": "array", "items": ref("Event")}, "next_cursor": {"type": ["string", "null"]}})

_SKEW: Schema = {
    "type": "object",
    "additionalProperties": {"type": "integer"},
    "description": "per host: estimated clock offset in ms (host - hub), 0 when unknown",
}

_OPT_STR: Schema = {"type": ["string", "null"]}
_SPAN_LOG = _obj({"id": _STR, "offset_ms": {"type": "number"}, "error": {"type": "boolean"}, "message": _OPT_STR})
# One span of the waterfall (obshub/query/spans.py): flat, in tree order, times corrected.
_SPAN = _obj(
    {
        "id": _STR,
        "span_id": _OPT_STR,
        "parent_id": _OPT_STR,
        "name": _OPT_STR,
        "service": _OPT_STR,
        "host": _OPT_STR,
        "span_kind": _OPT_STR,
        "status": _STR,
        "status_message": _OPT_STR,
        "start": ref("Time"),
        "offset_ms": {"type": "number", "minimum": 0},
        "duration_ms": {"type": "number", "minimum": 0},
        "self_ms": {"type": "number", "minimum": 0},
        "slowest": {"type": "boolean"},
        "depth": _COUNT,
        "orphan": {"type": "boolean"},
        "critical": {"type": "boolean"},
        "before_parent": {"type": "boolean"},
        "logs": {"type": "array", "items": _SPAN_LOG},
    }
)

_TRACE = _obj(
    {
        "id": _STR,
        "events": {"type": "array", "items": ref("Event")},
        "hosts": _STRINGS,
        "services": _STRINGS,
        "start": _nullable(ref("Time")),
        "end": _nullable(ref("Time")),
        "error_count": _COUNT,
        "truncated": {"type": "boolean"},
        "skew_ms": _SKEW,
        "spans": {"type": "array", "items": ref("Span")},
    }
)

_TIMELINE_REQUEST = _obj(
    {
        "request_id": _STR,
        "hosts": _STRINGS,
        "services": _STRINGS,
        "start": ref("Time"),
        "end": ref("Time"),
        "events": _COUNT,
        "errors": _COUNT,
        "previous_host": {"type": ["string", "null"]},
        "host_switch": {"type": "boolean"},
        "truncated": {"type": "boolean"},
    }
)

_TIMELINE = _obj(
    {
        "user_id": _STR,
        "requests": {"type": "array", "items": ref("TimelineRequest")},
        "events": {"type": "array", "items": ref("Event")},
        "host_switches": _COUNT,
        "truncated": {"type": "boolean"},
        "skew_ms": _SKEW,
        "total_requests": _COUNT,
        "total_requests_capped": {"type": "boolean"},
        "next_cursor": {"type": ["string", "null"]},
    }
)

_GROUP_FIELDS: dict[str, Schema] = {
    "id": _STR,
    "title": _STR,
    "type": {"type": ["string", "null"]},
    "culprit": {"type": ["string", "null"]},
    "count": _COUNT,
    "users": _COUNT,
    "hosts": _STRINGS,
    "first_seen": ref("Time"),
    "last_seen": _nullable(ref("Time")),
    "state": {"enum": list(GROUP_STATES)},
    "level": _STR,
    "version": _STR,
    "is_new": {"type": "boolean"},
    "regressed": {"type": "boolean"},
    "regressed_at": _nullable(ref("Time")),
    "merged": _STRINGS,
}
_NULLABLE_STR: Schema = {"type": ["string", "null"]}
_OCCURRENCE = _obj(
    {
        "id": _STR,
        "ts": ref("Time"),
        "host": _NULLABLE_STR,
        "service": _NULLABLE_STR,
        "request_id": _NULLABLE_STR,
        "trace_id": _NULLABLE_STR,
        "user_id": _NULLABLE_STR,
        "release": _NULLABLE_STR,
    }
)
_GROUP_DETAIL = _obj(
    {
        **_GROUP_FIELDS,
        "latest_event": _nullable(ref("Event")),
        "occurrences": {"type": "array", "maxItems": 50, "items": ref("Occurrence")},
    }
)

_CHECK_NAME: Schema = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
_STATUS_CODE: Schema = {"type": "integer", "minimum": 100, "maximum": 599}
_CHECK_DEFINITION = _obj(
    {
        "name": _CHECK_NAME,
        "target": {
            "type": "string",
            "description": "http://…, https://… (a GET) or tcp://host:port (a connect)",
            "examples": ["https://api.example.com/health", "tcp://db.internal:5432"],
        },
        "interval_s": {
            "type": "integer",
            "minimum": MIN_INTERVAL_S,
            "maximum": MAX_INTERVAL_S,
            "default": DEFAULT_INTERVAL_S,
        },
        "timeout_s": {
            "type": "number",
            "minimum": 0.1,
            "maximum": MAX_TIMEOUT_S,
            "default": DEFAULT_TIMEOUT_S,
            "description": "at most `interval_s`; default 10, or `interval_s` if smaller",
        },
        "expect_status": {
            "oneOf": [_STATUS_CODE, {"type": "array", "minItems": 1, "items": _STATUS_CODE}],
            "description": "HTTP targets only; absent: any status < 400 is up",
        },
        "expect_body": {"type": "string", "minLength": 1, "maxLength": 1024, "description": "HTTP targets only"},
        "project": {"type": "string", "minLength": 1, "description": "may only repeat the token's project name"},
        "public": {
            "type": "boolean",
            "default": False,
            "description": "shown on the project's public status page (setting status_pages)",
        },
    },
    required=("name", "target"),
)
_PERCENT: Schema = {"type": ["number", "null"], "minimum": 0, "maximum": 100}
_CHECK = _obj(
    {
        "name": _STR,
        "target": {"type": "string", "description": "a password in it is shown as ***"},
        "up": {"type": ["boolean", "null"]},
        "last_checked": _nullable(ref("Time")),
        "latency_ms": {"type": ["number", "null"]},
        "status": {"type": ["integer", "null"]},
        "message": _NULLABLE_STR,
        "uptime_24h": _PERCENT,
        "uptime_7d": _PERCENT,
        "uptime_30d": _PERCENT,
        "interval_s": {"type": "integer"},
        "timeout_s": {"type": "number"},
        "expect_status": {"type": ["array", "null"], "items": {"type": "integer"}},
        "expect_body": _NULLABLE_STR,
        "source": {"enum": ["config", "api"]},
        "public": {"type": "boolean", "description": "on the project's public status page"},
        "tls_expires_at": {
            **_nullable(ref("Time")),
            "description": "https: when the target's certificate expires, from the newest result",
        },
    }
)

# -- alert rules (docs/alerting.md) ------------------------------------------------------------

_DURATION: Schema = {
    "oneOf": [{"type": "string", "examples": ["30s", "5m", "2h", "1d"]}, {"type": "number", "minimum": 0}],
    "description": "a duration: 30s, 5m, 2h, 1d (or seconds)",
}
_ALERT_DEFINITION = _obj(
    {
        "name": _CHECK_NAME,
        "kind": {"enum": ["error", "check", "threshold", "absence", "metric"]},
        "project": {"type": "string", "minLength": 1, "description": "may only repeat the token's project name"},
        "when": {"enum": ["new", "regression", "frequency", "down", "tls_expiry"], "description": "error, check rules"},
        "query": {"type": "string", "maxLength": 4096, "description": "the query language of search"},
        "measure": {
            "type": "string",
            "description": "threshold: count, unique(user_id), avg(attrs.X), p95(attrs.X), max(attrs.X); "
            "error frequency: count, users",
        },
        "window": _DURATION,
        "op": {"enum": [">", "<"]},
        "threshold": {"type": "number"},
        "for": _DURATION,
        "group": {
            "type": "string",
            "maxLength": 208,
            "description": "error frequency: one group id; metric: one group of the metric (absent: its total)",
        },
        "metric": {"type": "string", "maxLength": 64, "description": "metric rules: a defined metric's name"},
        "bucket": {"enum": ["current", "previous"], "default": "current", "description": "metric rules"},
        "check": {"type": "string", "maxLength": 64, "description": "check rules: one check (absent: every check)"},
        "failures": {"type": "integer", "minimum": 1, "maximum": 100, "default": 2},
        "successes": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
        "days": {"type": "number", "exclusiveMinimum": 0, "maximum": 365, "default": 14},
        "labels": {"type": "object", "maxProperties": 20, "additionalProperties": {"type": "string", "maxLength": 256}},
        "annotation": {"type": "string", "maxLength": 4096},
        "notify": {"type": "array", "maxItems": 20, "items": _CHECK_NAME},
        "group_wait": _DURATION,
        "repeat_interval": _DURATION,
        "send_resolved": {"type": "boolean", "default": True},
    },
    required=("name", "kind"),
)
_ALERT_STATE: Schema = {"enum": ["ok", "pending", "firing", "resolved"]}
_ALERT_INSTANCE = _obj(
    {
        "instance": {"type": ["string", "null"], "description": "the group id or check name; null for a rule with one"},
        "state": _ALERT_STATE,
        "active_since": _nullable(ref("Time")),
        "fired_at": _nullable(ref("Time")),
        "resolved_at": _nullable(ref("Time")),
        "value": {"type": ["number", "null"]},
        "summary": _NULLABLE_STR,
        "fired": _COUNT,
    }
)
_ALERT_RULE = _obj(
    {
        "name": _STR,
        "kind": {"enum": ["error", "check", "threshold", "absence", "metric"]},
        "source": {"enum": ["config", "api"]},
        "state": {"enum": ["ok", "pending", "firing", "muted"]},
        "alert_state": {"enum": ["ok", "pending", "firing"]},
        "muted_until": _nullable(ref("Time")),
        "labels": {"type": "object", "additionalProperties": _STR},
        "annotation": _STR,
        "query": _NULLABLE_STR,
        "definition": {"type": "object", "description": "the rule's keys as defined"},
        "last_evaluation": _nullable(ref("Time")),
        "last_value": {"type": ["number", "null"]},
        "last_error": _NULLABLE_STR,
        "fired": _COUNT,
        "instances": {"type": "array", "items": _ALERT_INSTANCE},
    }
)
_ALERT_DELIVERY = _obj(
    {
        "hub": _NULLABLE_STR,
        "updated_at": ref("Time"),
        "notifiers": {
            "type": "array",
            "items": _obj(
                {
                    "name": _STR,
                    "type": {"enum": ["alertmanager", "webhook", "slack", "email"]},
                    "target": {"type": "string", "description": "where it sends, secrets masked"},
                    "sent": _COUNT,
                    "failed": _COUNT,
                    "rejected": _COUNT,
                    "dropped": _COUNT,
                    "pending": _COUNT,
                    "last_ok_at": _nullable(ref("Time")),
                    "last_error": _NULLABLE_STR,
                    "last_error_at": _nullable(ref("Time")),
                }
            ),
        },
    }
)
_ALERT_CHANGE = _obj(
    {
        "at": ref("Time"),
        "instance": _NULLABLE_STR,
        "from": _ALERT_STATE,
        "to": _ALERT_STATE,
        "value": {"type": ["number", "null"]},
    }
)
_ALERT_MUTE = {
    "oneOf": [
        _obj({"for": _DURATION}),
        _obj({"until": {"type": ["string", "integer"], "description": "RFC 3339 or epoch, within a year"}}),
    ]
}

# -- Sentry -----------------------------------------------------------------------------------

_SENTRY_FRAME = _obj(
    {
        k: {"type": ["string", "integer", "boolean", "null"]}
        for k in ("module", "function", "filename", "abs_path", "lineno", "in_app", "context_line")
    },
    required=(),
    closed=False,
)
_SENTRY_EXCEPTION = _obj(
    {
        "type": _STR,
        "value": _STR,
        "module": _STR,
        "mechanism": {"type": "object"},
        "stacktrace": _obj({"frames": {"type": "array", "items": _SENTRY_FRAME}}, required=(), closed=False),
    },
    required=(),
    closed=False,
)
_SENTRY_MESSAGE = _obj({"formatted": _STR, "message": _STR}, required=(), closed=False)


def _as_sent(schema: Schema) -> Schema:
    """What SDKs send, as a hint: the hub reads Sentry payloads leniently (SDKs differ), so a part of
    another shape is skipped, or the event is refused with a 400 naming the field, never the body."""
    return {"anyOf": [schema, {}]}


_SENTRY_EVENT: Schema = {
    "type": "object",
    "description": (
        "A Sentry event as the SDKs send it (docs/api.md, Sentry ingest). Each field's first "
        "`anyOf` branch is its usual shape; a field of another shape is ignored, or refuses the "
        "event with a 400 naming it (`level`, `timestamp`, the text fields); unknown keys are "
        "ignored."
    ),
    "properties": {
        k: _as_sent(v)
        for k, v in {
            "event_id": {"type": "string", "description": "becomes `id` without dashes"},
            "timestamp": _EPOCH_OR_TEXT,
            "level": _STR,
            "message": {"oneOf": [_STR, _SENTRY_MESSAGE]},
            "logentry": _SENTRY_MESSAGE,
            "exception": {
                "oneOf": [
                    _obj({"values": {"type": "array", "items": _SENTRY_EXCEPTION}}, required=(), closed=False),
                    {"type": "array", "items": _SENTRY_EXCEPTION},
                ]
            },
            "tags": {
                "oneOf": [
                    {"type": "object", "additionalProperties": _STR},
                    {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2}},
                ]
            },
            "user": _obj({"id": _STR, "username": _STR, "email": _STR}, required=(), closed=False),
            "contexts": _obj(
                {"trace": _obj({"trace_id": _STR, "span_id": _STR}, required=(), closed=False)},
                required=(),
                closed=False,
            ),
            "request": _obj({"headers": {"type": ["object", "array"]}}, required=(), closed=False),
            **{k: _STR for k in ("server_name", "environment", "release", "logger", "transaction", "platform")},
            "fingerprint": {"type": "array", "minItems": 1, "maxItems": 16, "items": _STR},
        }.items()
    },
}

# -- answers of the other routes --------------------------------------------------------------

_ERROR = _obj(
    {
        "error": {"type": "string", "description": "starts with the parameter or field at fault"},
        "column": {"type": "integer", "minimum": 1, "description": "syntax errors in `q` only: the 1-based position"},
    },
    required=("error",),
)
_SENTRY_ERROR = _obj(
    {
        "detail": _STR,
        "id": {"type": ["string", "null"], "description": "malformed items: the envelope's event id"},
        "stored": {**_COUNT, "description": "malformed items: the valid events kept"},
    },
    required=("detail",),
)

# -- aggregate (docs/aggregate.md) ---------------------------------------------------------------

_AGG_VALUE = {
    "type": ["number", "null"],
    "description": "the measure: an integer for count and unique; null when no event had a number",
}
_AGG_POINT = _obj(
    {"t": ref("Time"), "count": _COUNT, "value": _AGG_VALUE}, description="one non-empty time bucket, oldest first"
)
_AGG_PARTS: dict[str, Schema] = {
    "count": {**_COUNT, "description": "events in this bucket (numbers or not)"},
    "value": _AGG_VALUE,
    "series": {"type": "array", "items": _AGG_POINT, "description": "with `interval` only"},
    "groups": {"type": "array", "items": ref("AggregateGroup"), "description": "the next group_by level"},
    "other": ref("AggregateBucket"),
}
_AGG_BUCKET = _obj(_AGG_PARTS, required=("count", "value"))
_AGG_GROUP = _obj(
    {"key": {"type": ["string", "number"], "description": "the group's value"}, **_AGG_PARTS},
    required=("key", "count", "value"),
)
_GROUP_BY = {"type": "string", "description": "a core field or an attribute (`route`, `attrs.route`)"}
_NULL = {"type": "null"}  # a JSON body's null: the parameter's default
_AGGREGATE_REQUEST = _obj(
    {
        "q": {"type": ["string", "null"]},
        "from": {"type": ["string", "integer", "null"]},
        "to": {"type": ["string", "integer", "null"]},
        "measure": {"type": ["string", "null"], "default": "count"},
        "group_by": {"oneOf": [{"type": "string"}, {"type": "array", "items": _GROUP_BY, "maxItems": 2}, _NULL]},
        "top": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_TOP, "default": 10},
        "interval": {"type": ["string", "null"]},
        "format": {"oneOf": [{"enum": ["json", "csv"], "default": "json"}, _NULL]},
    },
    required=(),
    description="the query parameters of GET /api/v1/aggregate as a JSON object (null: the default)",
)
_AGGREGATE = _obj(
    {
        "measure": {"type": "string", "description": "as understood: `p95(attrs.duration_ms)`"},
        "group_by": {"type": "array", "items": {"type": "string"}},
        "top": {"type": "integer", "minimum": 1, "maximum": MAX_TOP},
        "from": ref("Time"),
        "to": ref("Time"),
        "interval_s": {"type": ["integer", "null"], "description": "the time buckets' width; null: none"},
        "total": ref("AggregateBucket"),
        "groups": {"type": "array", "items": ref("AggregateGroup")},
        "other": ref("AggregateBucket"),
    },
    required=("measure", "group_by", "top", "from", "to", "interval_s", "total"),
)

_SERIES_POINTS = {
    "type": "array",
    "items": _obj({"t": ref("Time"), "count": {"type": "integer", "minimum": 0}}),
}

# -- funnels, retention, experiments (docs/analytics.md) -------------------------------------------
_TIME_FIELD = {"type": ["string", "integer", "null"], "description": "as `from`/`to` of the query API"}
_ANALYSIS_STEP = {
    "oneOf": [
        {"type": "string", "minLength": 1, "description": "an event name"},
        _obj({"event": {"type": "string", "minLength": 1}, "q": {"type": ["string", "null"]}}, required=("event",)),
    ]
}
_ANY_STEP = {
    "oneOf": [
        {"type": "string", "minLength": 1, "description": "an event name"},
        _obj(
            {"event": {"type": ["string", "null"], "minLength": 1}, "q": {"type": ["string", "null"]}},
            required=(),
            description="an event name and a query filter; no event: any event",
        ),
        {"type": "null"},
    ]
}
_FUNNEL_FIELDS: dict[str, Schema] = {
    "steps": {"type": "array", "items": _ANALYSIS_STEP, "minItems": 2, "maxItems": 10},
    "window": {"type": ["string", "null"], "default": "1d", "description": "conversion window: 1h, 1d, 14d"},
    "order": {"enum": ["sequential", "any", None], "default": "sequential"},
    "unit": {
        "enum": ["user", "session", None],
        "default": "user",
        "description": "follow each user_id, or each session_id (counts are then `sessions`)",
    },
    "from": _TIME_FIELD,
    "to": _TIME_FIELD,
}
_FUNNEL_REQUEST = _obj(
    {**_FUNNEL_FIELDS, "breakdown": {"type": ["string", "null"], "description": "an attribute of step 1's event"}},
    required=("steps",),
)
_EXPERIMENT_REQUEST = _obj(
    {
        **_FUNNEL_FIELDS,
        "variant": {"type": "string", "minLength": 1, "description": "the attribute of step 1's event"},
        "control": {"description": "the control's value (default: the first in sort order)"},
    },
    required=("steps", "variant"),
)
_RETENTION_REQUEST = _obj(
    {
        "start": _ANY_STEP,
        "return": _ANY_STEP,
        "period": {"enum": ["day", "week", None], "default": "day"},
        "periods": {"type": "integer", "minimum": 1, "maximum": 120},
        "bounded": {"type": "boolean", "default": True},
        "from": _TIME_FIELD,
        "to": _TIME_FIELD,
    },
    required=(),
)
_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_UNIT = {"enum": ["user", "session"]}
# unit=user counts `users` (and `events_without_user`, `users_without_variant`); unit=session
# the same keys with `session`.
_ONE_UNIT = (("users", "sessions"),)


def _per_unit(props: dict[str, Schema], keys: tuple[tuple[str, str], ...], required: tuple[str, ...]) -> Schema:
    """An object holding, for each (user key, session key) pair, exactly one of the two."""
    both = {k: _COUNT for pair in keys for k in pair}
    one_of = [{"required": [pair[i] for pair in keys]} for i in (0, 1)]
    return _obj({**props, **both}, required=required, oneOf=one_of)


_FUNNEL_STEP = _per_unit(
    {
        "event": {"type": ["string", "null"]},
        "q": {"type": "string"},
        "from_previous": _RATE,
        "from_first": _RATE,
        "median_seconds": {"type": ["number", "null"], "minimum": 0},
    },
    _ONE_UNIT,
    ("event", "q", "from_previous", "from_first", "median_seconds"),
)
_STEPS = {"type": "array", "items": _FUNNEL_STEP}
_FUNNEL = _per_unit(
    {
        "unit": _UNIT,
        "steps": _STEPS,
        "window_seconds": {"type": "integer"},
        "order": {"type": "string"},
        "breakdown": {"type": "array", "items": _obj({"value": {}, "steps": _STEPS})},
        "other": _obj({"steps": _STEPS}),
    },
    (("events_without_user", "events_without_session"),),
    ("unit", "steps", "window_seconds", "order"),
)
_RETENTION = _obj(
    {
        "period": {"enum": ["day", "week"]},
        "bounded": {"type": "boolean"},
        "cohorts": {
            "type": "array",
            "items": _obj(
                {
                    "cohort": ref("Time"),
                    "users": {"type": "integer"},
                    "returned": {"type": "array", "items": {"type": ["integer", "null"]}},
                }
            ),
        },
        "curve": {
            "type": "array",
            "items": _obj({"period": {"type": "integer"}, "users": {"type": "integer"}, "rate": _RATE}),
        },
    }
)
_EXPERIMENT = _per_unit(
    {
        "unit": _UNIT,
        "variant": {"type": "string"},
        "variants": {
            "type": "array",
            "items": _per_unit({"value": {}, "converted": _COUNT}, _ONE_UNIT, ("value", "converted")),
        },
        "comparisons": {
            "type": "array",
            "items": _obj(
                {
                    "control": {},
                    "variant": {},
                    "control_rate": {"type": "number"},
                    "variant_rate": {"type": "number"},
                    "difference": {"type": "number"},
                    "z": {"type": "number"},
                    "p_value": {"type": "number", "minimum": 0, "maximum": 1},
                    "ci95": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                    "enough_data": {"type": "boolean"},
                    "reading": {"type": "string"},
                }
            ),
        },
        "steps": _STEPS,
    },
    (("users_without_variant", "sessions_without_variant"), ("events_without_user", "events_without_session")),
    ("unit", "variant", "variants", "comparisons", "steps"),
)
_PATHS_REQUEST = _obj(
    {
        "event": _ANALYSIS_STEP,
        "steps": {"type": "integer", "minimum": 1, "maximum": 5, "default": 3},
        "window": {"type": ["string", "null"], "default": "1h", "description": "how long after the event"},
        "top": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
        "unit": _FUNNEL_FIELDS["unit"],
        "from": _TIME_FIELD,
        "to": _TIME_FIELD,
    },
    required=("event",),
)
_NAME_OR_NULL = {"type": ["string", "null"], "description": "null: a name outside the range's 20 most frequent"}
_PATHS = _per_unit(
    {
        "event": {"type": ["string", "null"]},
        "q": {"type": "string"},
        "unit": _UNIT,
        "window_seconds": {"type": "integer"},
        "next": {"type": "array", "items": _per_unit({"event": _NAME_OR_NULL}, _ONE_UNIT, ("event",))},
        "paths": {
            "type": "array",
            "items": _per_unit({"events": {"type": "array", "items": _NAME_OR_NULL}}, _ONE_UNIT, ("events",)),
        },
    },
    (
        ("users", "sessions"),
        ("users_without_next", "sessions_without_next"),
        ("events_without_user", "events_without_session"),
    ),
    ("event", "q", "unit", "window_seconds", "next", "paths"),
)

# -- metrics (docs/metrics.md) ---------------------------------------------------------------------

_METRIC_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
_METRIC_DEFINITION = _obj(
    {
        "name": _METRIC_NAME,
        "project": {"type": "string", "description": "the token's project (may be omitted)"},
        "datasource": {"enum": ["events", "prometheus"], "default": "events"},
        "promql": {
            "type": "string",
            "minLength": 1,
            "maxLength": 4096,
            "description": "datasource prometheus only (required): the PromQL expression, `$__range` the bucket",
        },
        "query": {"type": "string", "description": "the events counted (docs/api.md, Query language); empty: all"},
        "measure": {
            "type": "string",
            "default": "count",
            "description": "count, unique(FIELD), sum|avg|min|max|p50|p90|p95|p99(FIELD) (docs/aggregate.md)",
        },
        "group_by": {"type": "string", "description": "one field: a core field or an attribute"},
        "max_groups": {"type": "integer", "minimum": 1, "maximum": MAX_GROUPS, "default": DEFAULT_GROUPS},
        "description": {"type": "string", "maxLength": 1024},
        "unit": {"type": "string", "maxLength": 32},
    },
    required=("name",),
)
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_METRIC = _obj(
    {
        "name": {"type": "string"},
        "datasource": {"enum": ["events", "prometheus"]},
        "promql": {"type": ["string", "null"]},
        "query": {"type": "string", "description": "canonical form"},
        "measure": {"type": "string"},
        "group_by": {"type": ["string", "null"], "description": "as understood: `attrs.plan`"},
        "max_groups": {"type": "integer"},
        "description": {"type": "string"},
        "unit": {"type": "string"},
        "source": {"enum": ["config", "api"]},
        "rollup": _obj(
            {
                "from": {**_nullable(ref("Time")), "description": "the day of the oldest matching event"},
                "computed_to": {**_nullable(ref("Time")), "description": "every bucket before is computed"},
                "computed_at": {**_nullable(ref("Time")), "description": "the rollup job's last run"},
                "backfilled": {"type": "boolean"},
                "last_error": {"type": ["string", "null"], "description": "why the last run failed"},
            }
        ),
        "current": _obj({"1h": _NUMBER_OR_NULL, "1d": _NUMBER_OR_NULL}, description="this hour and UTC day"),
    }
)
_METRIC_POINT = _obj({"t": ref("Time"), "count": _COUNT, "value": _NUMBER_OR_NULL})
_METRIC_SERIES = _obj(
    {
        "metric": {"type": "string"},
        "measure": {"type": "string"},
        "unit": {"type": "string"},
        "interval": {"enum": ["hour", "day"]},
        "from": ref("Time"),
        "to": ref("Time"),
        "total": {"type": "array", "items": _METRIC_POINT, "description": "every matching event"},
        "groups": {
            "type": "array",
            "items": _obj({"group": {"type": "string"}, "series": {"type": "array", "items": _METRIC_POINT}}),
        },
    }
)

# -- dashboards (docs/api.md, Dashboards; obshub/query/dashboards.py) ----------------------------

_PANEL_REQUEST = _obj(
    {
        "q": {"type": ["string", "null"]},
        "measure": {"type": ["string", "null"], "default": "count"},
        "group_by": {"oneOf": [{"type": "string"}, {"type": "array", "items": _GROUP_BY, "maxItems": 2}, _NULL]},
        "top": {
            "oneOf": [
                {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_TOP},
                {"type": "string", "pattern": f"^(|[1-9][0-9]?|{MAX_TOP})$", "description": "as a web form sends it"},
            ],
            "default": 10,
            "description": "groups per level; an empty string is the default, digits are the number",
        },
        "interval": {"type": ["string", "null"], "description": "auto, 1m..1d; absent: one number per group"},
    },
    required=(),
    description="GET /api/v1/aggregate's parameters but the range, which is the dashboard's (null: the default;"
    " an exported panel lists only those given)",
)
_EVENTS_PANEL = _obj(
    {
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "chart": {"enum": ["line", "bar"], "default": "line"},
        "source": {"enum": ["events"], "default": "events", "description": "where the numbers come from"},
        "request": _PANEL_REQUEST,
    },
    required=("title",),
)
_METRIC_PANEL = _obj(
    {
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "chart": {"enum": ["line", "bar"], "default": "line"},
        "source": {"enum": ["metric"], "description": "a defined metric's stored rollup series"},
        "request": _obj(
            {
                "metric": {**_METRIC_NAME, "description": "the metric's name"},
                "interval": {
                    "enum": ["hour", "day", "", None],
                    "default": "hour",
                    "description": "null or empty: hour",
                },
                "group": {
                    "type": ["string", "null"],
                    "maxLength": 208,
                    "description": "absent (or null, empty): the total; a group's name; `*`: every group and other",
                },
            },
            required=("metric",),
        ),
    },
    required=("title", "source", "request"),
)


def _analysis_request(analysis: str, body: Schema, description: str) -> Schema:
    """An analysis panel's request: the API body without the range, plus `analysis`."""
    props = {k: v for k, v in body["properties"].items() if k not in ("from", "to")}
    required = [k for k in body["required"] if k in props]
    return _obj({"analysis": {"const": analysis}, **props}, required=("analysis", *required), description=description)


_SERIES_PANEL_REQUEST = _analysis_request(
    "series",
    _obj(
        {
            "events": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "maxItems": 5,
                "uniqueItems": True,
                "description": "events compared on one chart; empty: every event",
            },
            "interval": {"type": ["string", "null"], "default": "hour", "description": "hour, day or a duration"},
            "unique": {"type": "boolean", "default": False, "description": "distinct users instead of events"},
            "q": {"type": ["string", "null"]},
            "breakdown": {"type": ["string", "null"], "description": "one event only: a series per top value"},
            "top": {"type": "integer", "minimum": 1, "maximum": MAX_TOP, "default": 5},
        },
        required=(),
    ),
    "GET /api/v1/analytics/series once per event (the Analytics page's Trends tab)",
)
_ANALYTICS_PANEL = _obj(
    {
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "chart": {"enum": ["line", "bar"], "default": "line", "description": "Trends only; the others draw their own"},
        "source": {"enum": ["analytics"], "description": "a product analysis saved from the Analytics page"},
        "request": {
            "oneOf": [
                _SERIES_PANEL_REQUEST,
                _analysis_request("funnel", _FUNNEL_REQUEST, "POST /api/v1/analytics/funnel's body, no range"),
                _analysis_request("retention", _RETENTION_REQUEST, "POST /api/v1/analytics/retention's body, no range"),
                _analysis_request(
                    "experiment", _EXPERIMENT_REQUEST, "POST /api/v1/analytics/experiment's body, no range"
                ),
            ]
        },
    },
    required=("title", "source", "request"),
)
_PANEL = {"oneOf": [_EVENTS_PANEL, _METRIC_PANEL, _ANALYTICS_PANEL]}
_DASHBOARD = _obj(
    {
        "slug": {
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9-]{0,63}$",
            "description": "its URL name; absent: made from the title",
        },
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "time": _obj(
            {"from": {"type": "string", "default": "-24h"}, "to": {"type": "string", "default": ""}},
            required=(),
            description="the default shared range ('' to: now)",
        ),
        "refresh_s": {"enum": [0, 30, 60, 300, 900], "default": 0, "description": "auto-refresh; 0: off"},
        "panels": {"type": "array", "items": _PANEL, "maxItems": 24},
    },
    required=("title",),
    description="a dashboard as exported and imported (config as code); its public link is not part of it",
)
_DASHBOARD_LIST = _obj(
    {
        "dashboards": {
            "type": "array",
            "items": _obj(
                {
                    "slug": _STR,
                    "title": _STR,
                    "panels": _COUNT,
                    "public": {"type": "boolean", "description": "published at a read-only link"},
                }
            ),
        }
    }
)

SCHEMAS: dict[str, Schema] = {
    "Time": _TIME,
    "Event": _EVENT,
    "EventIn": _EVENT_IN,
    "IngestAnswer": _INGEST_ANSWER,
    "SearchPage": _SEARCH_PAGE,
    "Trace": _TRACE,
    "Span": _SPAN,
    "Timeline": _TIMELINE,
    "TimelineRequest": _TIMELINE_REQUEST,
    "Group": _obj(_GROUP_FIELDS),
    "GroupDetail": _GROUP_DETAIL,
    "Occurrence": _OCCURRENCE,
    "CheckDefinition": _CHECK_DEFINITION,
    "Check": _CHECK,
    "AlertDefinition": _ALERT_DEFINITION,
    "AlertRule": _ALERT_RULE,
    "AlertDelivery": _ALERT_DELIVERY,
    "AlertChange": _ALERT_CHANGE,
    "AlertMute": _ALERT_MUTE,
    "SentryEvent": _SENTRY_EVENT,
    "SentryAnswer": _obj({"id": {"type": ["string", "null"]}}),
    "Error": _ERROR,
    "SentryError": _SENTRY_ERROR,
    "Aggregate": _AGGREGATE,
    "AggregateBucket": _AGG_BUCKET,
    "AggregateGroup": _AGG_GROUP,
    "AggregateRequest": _AGGREGATE_REQUEST,
    "SeriesPoints": _SERIES_POINTS,
    "FunnelRequest": _FUNNEL_REQUEST,
    "Funnel": _FUNNEL,
    "RetentionRequest": _RETENTION_REQUEST,
    "Retention": _RETENTION,
    "ExperimentRequest": _EXPERIMENT_REQUEST,
    "Experiment": _EXPERIMENT,
    "PathsRequest": _PATHS_REQUEST,
    "Paths": _PATHS,
    "MetricDefinition": _METRIC_DEFINITION,
    "Metric": _METRIC,
    "MetricSeries": _METRIC_SERIES,
    "Dashboard": _DASHBOARD,
    "DashboardList": _DASHBOARD_LIST,
}


# -- parameters -------------------------------------------------------------------------------


def _query(name: str, schema: Schema, description: str, required: bool = False, empty: bool = True) -> Schema:
    """A query parameter. `empty`: an empty value (`limit=`) is the same as none, as the web UI's
    forms send them; `order` and `unique` are the exceptions (400), and required ones."""
    out = {"name": name, "in": "query", "required": required, "schema": schema, "description": description}
    if empty and not required:
        out["allowEmptyValue"] = True
    return out


_TIME_PARAM = (
    "RFC 3339 / ISO 8601 (encode `+` as `%2B`), an epoch number (s, ms, µs or ns), `now`, or "
    "relative: `-15m`, `-24h`, `-7d`, `now-30s`"
)


def limit(default: int, maximum: int = MAX_LIMIT, what: str = "items per answer") -> Schema:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}, what)


PARAMETERS: dict[str, Schema] = {
    "q": _query(
        "q",
        {"type": "string", "default": ""},
        f"a query (docs/api.md, Query language) of at most {MAX_TERMS} terms and {MAX_DEPTH} levels of "
        "parentheses and NOT; empty: everything",
    ),
    "from": _query("from", {"type": "string"}, f"inclusive lower bound on `ts`: {_TIME_PARAM}"),
    "to": _query("to", {"type": "string"}, f"exclusive upper bound on `ts`, after `from`: {_TIME_PARAM}"),
    "cursor": _query("cursor", {"type": "string"}, "the `next_cursor` of the previous page"),
    "event": _query("event", {"type": "string", "minLength": 1}, "the analytics event's name", required=True),
}

# Per-route parameters that are not shared, with their bounds from the code.
ROUTE_PARAMETERS: dict[str, Schema] = {
    "search_limit": limit(100, what="events per page"),
    "timeline_limit": limit(TIMELINE_LIMIT, TIMELINE_MAX_LIMIT, "requests per page"),
    "groups_limit": limit(200, what="groups returned"),
    "analytics_limit": limit(100),
    "series_event": _query("event", {"type": "string"}, "the analytics event's name; absent: every analytics event"),
    "order": _query("order", {"enum": ["desc", "asc"], "default": "desc"}, "newest or oldest first", empty=False),
    "state": _query("state", {"enum": [*GROUP_STATES, "all"]}, "groups in this state; absent or `all`: every state"),
    "format": _query("format", {"enum": list(FORMATS), "default": "csv"}, "csv or ndjson"),
    "columns": _query(
        "columns",
        {"type": "string"},
        f"CSV only: comma-separated column names (at most "
        f"{MAX_COLUMNS}, none empty, none twice) replacing the "
        f"default columns",
    ),
    "spreadsheet": _query(
        "spreadsheet",
        {"enum": ["0", "1"], "default": "0"},
        "CSV only: `1` prefixes cells starting with = + - @ with `'`",
    ),
    "property": _query("property", {"type": "string", "minLength": 1}, "an attribute key or core field", required=True),
    "interval": _query(
        "interval",
        {"type": "string", "default": "hour"},
        f"`hour`, `day` or a duration `<N><s|m|h|d|w>` (N > 0, at most {MAX_INTERVAL_US // 86_400_000_000} days); "
        "at most 5,000 buckets",
    ),
    "unique": _query("unique", {"enum": ["0", "1"], "default": "0"}, "`1`: count distinct `user_id`s", empty=False),
    "measure": _query(
        "measure",
        {"type": "string", "default": "count"},
        "`count`, `unique` (of user_id), `unique(FIELD)`, or `sum|avg|min|max|p50|p90|p95|p99(FIELD)` of a numeric "
        "attribute",
    ),
    "breakdown": _query("breakdown", {"type": "string"}, "a field (an attribute: its name): a series per top value"),
    "series_top": _query(
        "top", {"type": "integer", "minimum": 1, "maximum": MAX_TOP, "default": 5}, "breakdown values, by count"
    ),
    "group_by": _query("group_by", {"type": "string"}, "up to two fields, comma-separated: core fields or attributes"),
    "top": _query(
        "top", {"type": "integer", "minimum": 1, "maximum": MAX_TOP, "default": 10}, "groups per level, by count"
    ),
    "agg_interval": _query(
        "interval",
        {"type": "string"},
        f"time buckets: `auto` (at most {AUTO_BUCKETS}) or a duration from 1m to 1d; at most {MAX_BUCKETS} buckets "
        f"and {MAX_CELLS} cells (buckets x groups); absent: none",
    ),
    "agg_format": _query("format", {"enum": ["json", "csv"], "default": "json"}, "json or csv"),
    "metric_interval": _query(
        "interval",
        {"enum": ["hour", "day"], "default": "hour"},
        f"the rollup's buckets (UTC); at most {MAX_SERIES_BUCKETS} in the range",
    ),
    "metric_group": _query("group", {"type": "string"}, "one group's rows only (`other`: the rest); absent: all"),
}


# -- answers ----------------------------------------------------------------------------------


def _json(schema: Schema) -> dict[str, Schema]:
    return {"application/json": {"schema": schema}}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying unchanged",
        "required": True,
        "schema": {"type": "string", "pattern": r"^\d+$"},
    }
}
_CLOSE = {"Connection": {"required": True, "schema": {"const": "close"}}}
_SENTRY_HEADERS = {"Access-Control-Allow-Origin": {"required": True, "schema": {"const": "*"}}}
_SENTRY_LIMITS = {
    "X-Sentry-Rate-Limits": {
        "required": True,
        "schema": {"type": "string"},
        "description": "`<seconds>::organization`: the SDK holds every event that long",
    }
}


def _answer(description: str, schema: Schema, headers: dict[str, Schema] | None = None) -> Schema:
    out: Schema = {"description": description, "content": _json(schema)}
    if headers:
        out["headers"] = headers
    return out


RESPONSES: dict[str, Schema] = {
    "BadRequest": _answer("A parameter or body the hub cannot use; the text names it", ref("Error")),
    "Unauthorized": _answer(
        "No, an unknown or a revoked token",
        ref("Error"),
        {"WWW-Authenticate": {"required": True, "schema": {"const": "Bearer"}}},
    ),
    "Forbidden": _answer("A valid token of the wrong scope", ref("Error")),
    "NotFound": _answer("The named object does not exist in the token's project", ref("Error")),
    "Conflict": _answer(
        "A conflicting change: retry, or change it in the hub's config file; or a new check beyond the hub's "
        "checks_max_per_project",
        ref("Error"),
    ),
    "TooManyRequests": _answer(
        "The store pushes back (or, on ingest, no ingest slot came free)", ref("Error"), _RETRY_AFTER
    ),
    "TooSlow": _answer(
        "The body did not arrive within `body_timeout_s` plus 1 s per `min_body_rate` bytes received; "
        "the hub closes the connection",
        ref("Error"),
        _CLOSE,
    ),
    "Unavailable": _answer(
        "The store is unavailable; nothing of the request was acknowledged", ref("Error"), _RETRY_AFTER
    ),
    "SentryBadRequest": _answer(
        "An empty or malformed body, or malformed items (the valid ones are stored)",
        ref("SentryError"),
        _SENTRY_HEADERS,
    ),
    "SentryUnauthorized": _answer("No, an unknown or a revoked key", ref("SentryError"), _SENTRY_HEADERS),
    "SentryForbidden": _answer(
        "A key of the wrong scope, or of another project than the URL's", ref("SentryError"), _SENTRY_HEADERS
    ),
    "SentryTooLarge": _answer(
        "The body is over a limit (as sent, decoded, or in lines)", ref("SentryError"), _SENTRY_HEADERS
    ),
    "SentryTooSlow": _answer(
        "The body did not arrive within `body_timeout_s` plus 1 s per `min_body_rate` bytes received; "
        "the hub closes the connection",
        ref("SentryError"),
        {**_SENTRY_HEADERS, **_CLOSE},
    ),
    # Starlette's own answer: the path matches no route (`{project_id}` takes digits only).
    "NoProject": {
        "description": "`project_id` is not a number",
        "content": {"text/plain": {"schema": {"const": "Not Found"}}},
    },
    "SentryUnsupportedEncoding": _answer(
        "A Content-Encoding other than identity, gzip, deflate, br, zstd", ref("SentryError"), _SENTRY_HEADERS
    ),
    "SentryTooManyRequests": _answer(
        "No ingest slot came free, or the store pushes back",
        ref("SentryError"),
        {**_SENTRY_HEADERS, **_RETRY_AFTER, **_SENTRY_LIMITS},
    ),
    "SentryUnavailable": _answer(
        "The store is unavailable; nothing was stored",
        ref("SentryError"),
        {**_SENTRY_HEADERS, **_RETRY_AFTER, **_SENTRY_LIMITS},
    ),
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "readToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A read token of the project (`obr_…`): queries, error groups, reading uptime checks.",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin token of the project (`oba_…`): defining and deleting uptime checks only.",
    },
    "ingestToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An ingest token of the project (`obi_…`): writes events only, on every ingest route.",
    },
    "sentryAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Sentry-Auth",
        "description": "`Sentry sentry_key=<key>, …` (also accepted as `Authorization: Sentry "
        "sentry_key=<key>`): a sentry key of the project (a DSN's key) or any of its ingest tokens.",
    },
    "sentryKey": {
        "type": "apiKey",
        "in": "query",
        "name": "sentry_key",
        "description": "A sentry key of the project (a DSN's key) or any of its ingest tokens, in the URL.",
    },
}

COMPONENTS: dict[str, Any] = {
    "schemas": SCHEMAS,
    "parameters": {**PARAMETERS, **ROUTE_PARAMETERS},
    "responses": RESPONSES,
    "securitySchemes": SECURITY_SCHEMES,
}

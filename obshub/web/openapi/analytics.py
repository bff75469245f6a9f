"""The analytics routes of the OpenAPI document: event names, properties, values, series,
funnels, retention, experiments, paths and the aggregate API, with their schemas."""

from __future__ import annotations

from obshub.query.aggregate import MAX_TOP
from obshub.web.openapi.blocks import COUNT, RANGE, Schema, Spec, obj, ok, param, read, ref, request_body

# Properties and values look at the event's newest 10,000 occurrences (docs/api.md, Analytics).
_SAMPLED: Spec = {
    "counted": {"type": "integer", "minimum": 0, "description": "occurrences looked at, newest first (at most 10,000)"},
    "approximate": {"type": "boolean", "description": "more occurred in the range than were looked at"},
}

_AGGREGATE_OK: Spec = {
    "description": "The aggregation (JSON), or with format=csv one row per bucket",
    "content": {"application/json": {"schema": ref("Aggregate")}, "text/csv": {"schema": {"type": "string"}}},
}

# -- aggregate (docs/aggregate.md) ---------------------------------------------------------------

_AGG_VALUE = {
    "type": ["number", "null"],
    "description": "the measure: an integer for count and unique; null when no event had a number",
}
_AGG_POINT = obj(
    {"t": ref("Time"), "count": COUNT, "value": _AGG_VALUE}, description="one non-empty time bucket, oldest first"
)
_AGG_PARTS: dict[str, Schema] = {
    "count": {**COUNT, "description": "events in this bucket (numbers or not)"},
    "value": _AGG_VALUE,
    "series": {"type": "array", "items": _AGG_POINT, "description": "with `interval` only"},
    "groups": {"type": "array", "items": ref("AggregateGroup"), "description": "the next group_by level"},
    "other": ref("AggregateBucket"),
}
_AGG_BUCKET = obj(_AGG_PARTS, required=("count", "value"))
_AGG_GROUP = obj(
    {"key": {"type": ["string", "number"], "description": "the group's value"}, **_AGG_PARTS},
    required=("key", "count", "value"),
)
GROUP_BY = {"type": "string", "description": "a core field or an attribute (`route`, `attrs.route`)"}
NULL = {"type": "null"}  # a JSON body's null: the parameter's default
_AGGREGATE_REQUEST = obj(
    {
        "q": {"type": ["string", "null"]},
        "from": {"type": ["string", "integer", "null"]},
        "to": {"type": ["string", "integer", "null"]},
        "measure": {"type": ["string", "null"], "default": "count"},
        "group_by": {"oneOf": [{"type": "string"}, {"type": "array", "items": GROUP_BY, "maxItems": 2}, NULL]},
        "top": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_TOP, "default": 10},
        "interval": {"type": ["string", "null"]},
        "format": {"oneOf": [{"enum": ["json", "csv"], "default": "json"}, NULL]},
    },
    required=(),
    description="the query parameters of GET /api/v1/aggregate as a JSON object (null: the default)",
)
_AGGREGATE = obj(
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
    "items": obj({"t": ref("Time"), "count": {"type": "integer", "minimum": 0}}),
}

# -- funnels, retention, experiments (docs/analytics.md) -------------------------------------------
_TIME_FIELD = {"type": ["string", "integer", "null"], "description": "as `from`/`to` of the query API"}
_ANALYSIS_STEP = {
    "oneOf": [
        {"type": "string", "minLength": 1, "description": "an event name"},
        obj({"event": {"type": "string", "minLength": 1}, "q": {"type": ["string", "null"]}}, required=("event",)),
    ]
}
_ANY_STEP = {
    "oneOf": [
        {"type": "string", "minLength": 1, "description": "an event name"},
        obj(
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
FUNNEL_REQUEST = obj(
    {**_FUNNEL_FIELDS, "breakdown": {"type": ["string", "null"], "description": "an attribute of step 1's event"}},
    required=("steps",),
)
EXPERIMENT_REQUEST = obj(
    {
        **_FUNNEL_FIELDS,
        "variant": {"type": "string", "minLength": 1, "description": "the attribute of step 1's event"},
        "control": {"description": "the control's value (default: the first in sort order)"},
    },
    required=("steps", "variant"),
)
RETENTION_REQUEST = obj(
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
    both = {k: COUNT for pair in keys for k in pair}
    one_of = [{"required": [pair[i] for pair in keys]} for i in (0, 1)]
    return obj({**props, **both}, required=required, oneOf=one_of)


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
        "breakdown": {"type": "array", "items": obj({"value": {}, "steps": _STEPS})},
        "other": obj({"steps": _STEPS}),
    },
    (("events_without_user", "events_without_session"),),
    ("unit", "steps", "window_seconds", "order"),
)
_RETENTION = obj(
    {
        "period": {"enum": ["day", "week"]},
        "bounded": {"type": "boolean"},
        "cohorts": {
            "type": "array",
            "items": obj(
                {
                    "cohort": ref("Time"),
                    "users": {"type": "integer"},
                    "returned": {"type": "array", "items": {"type": ["integer", "null"]}},
                }
            ),
        },
        "curve": {
            "type": "array",
            "items": obj({"period": {"type": "integer"}, "users": {"type": "integer"}, "rate": _RATE}),
        },
    }
)
_EXPERIMENT = _per_unit(
    {
        "unit": _UNIT,
        "variant": {"type": "string"},
        "variants": {
            "type": "array",
            "items": _per_unit({"value": {}, "converted": COUNT}, _ONE_UNIT, ("value", "converted")),
        },
        "comparisons": {
            "type": "array",
            "items": obj(
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
_PATHS_REQUEST = obj(
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

SCHEMAS: dict[str, Schema] = {
    "Aggregate": _AGGREGATE,
    "AggregateBucket": _AGG_BUCKET,
    "AggregateGroup": _AGG_GROUP,
    "AggregateRequest": _AGGREGATE_REQUEST,
    "SeriesPoints": _SERIES_POINTS,
    "FunnelRequest": FUNNEL_REQUEST,
    "Funnel": _FUNNEL,
    "RetentionRequest": RETENTION_REQUEST,
    "Retention": _RETENTION,
    "ExperimentRequest": EXPERIMENT_REQUEST,
    "Experiment": _EXPERIMENT,
    "PathsRequest": _PATHS_REQUEST,
    "Paths": _PATHS,
}

# The specs of the analytics routes: obshub.web.openapi merges every area's table.
OPERATIONS: dict[tuple[str, str], Spec] = {
    ("GET", "/api/v1/analytics/events"): read(
        "Analytics event names by count",
        "analytics",
        {
            "200": ok(
                {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {
                        "events": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "count"],
                                "additionalProperties": False,
                                "properties": {"name": {"type": "string"}, "count": {"type": "integer", "minimum": 0}},
                            },
                        }
                    },
                }
            )
        },
        [*RANGE, param("analytics_limit")],
    ),
    ("GET", "/api/v1/analytics/properties"): read(
        "The attribute keys an analytics event has",
        "analytics",
        {
            "200": ok(
                {
                    "type": "object",
                    "required": ["properties", *_SAMPLED],
                    "additionalProperties": False,
                    "properties": {"properties": {"type": "array", "items": {"type": "string"}}, **_SAMPLED},
                }
            )
        },
        [param("event"), *RANGE],
    ),
    ("GET", "/api/v1/analytics/values"): read(
        "A property's most frequent values",
        "analytics",
        {
            "200": ok(
                {
                    "type": "object",
                    "required": ["values", *_SAMPLED],
                    "additionalProperties": False,
                    "properties": {
                        "values": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["value", "count"],
                                "additionalProperties": False,
                                "properties": {
                                    "value": {"type": ["string", "number", "boolean", "null", "array"]},
                                    "count": {"type": "integer", "minimum": 0},
                                },
                            },
                        },
                        **_SAMPLED,
                    },
                }
            )
        },
        [param("event"), param("property"), *RANGE, param("analytics_limit")],
    ),
    ("GET", "/api/v1/analytics/series"): read(
        "Counts per time bucket, zeros included",
        "analytics",
        {
            "200": ok(
                {
                    "type": "object",
                    "required": ["points"],
                    "additionalProperties": False,
                    "properties": {
                        "breakdown": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["value", "points"],
                                "properties": {"value": {}, "points": ref("SeriesPoints")},
                            },
                        },
                        "other": {
                            "type": "object",
                            "required": ["points"],
                            "properties": {"points": ref("SeriesPoints")},
                        },
                        "points": ref("SeriesPoints"),
                    },
                }
            )
        },
        [
            param("series_event"),
            param("q"),
            param("breakdown"),
            param("series_top"),
            param("interval"),
            param("from"),
            param("to"),
            param("unique"),
        ],
    ),
    ("POST", "/api/v1/analytics/funnel"): read(
        "A funnel: users per step, conversion, median time to convert (docs/analytics.md)",
        "analytics",
        {"200": ok(ref("Funnel"))},
        requestBody=request_body(ref("FunnelRequest")),
    ),
    ("POST", "/api/v1/analytics/retention"): read(
        "Retention cohorts by day or week of a start event: the triangle table and the curve",
        "analytics",
        {"200": ok(ref("Retention"))},
        requestBody=request_body(ref("RetentionRequest")),
    ),
    ("POST", "/api/v1/analytics/experiment"): read(
        "A/B comparison of a funnel's conversion per variant: difference, z-test, 95% interval",
        "analytics",
        {"200": ok(ref("Experiment"))},
        requestBody=request_body(ref("ExperimentRequest")),
    ),
    ("POST", "/api/v1/analytics/paths"): read(
        "User paths: the most common next events after an event, per user or session",
        "analytics",
        {"200": ok(ref("Paths"))},
        requestBody=request_body(ref("PathsRequest")),
    ),
    ("GET", "/api/v1/aggregate"): read(
        "A measure by group and time bucket (docs/aggregate.md)",
        "analytics",
        {"200": _AGGREGATE_OK},
        [
            param("q"),
            *RANGE,
            param("measure"),
            param("group_by"),
            param("top"),
            param("agg_interval"),
            param("agg_format"),
        ],
    ),
    ("POST", "/api/v1/aggregate"): read(
        "The same aggregation, its parameters as a JSON body",
        "analytics",
        {"200": _AGGREGATE_OK},
        requestBody=request_body(ref("AggregateRequest")),
    ),
}

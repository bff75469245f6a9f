"""The metrics and dashboards routes of the OpenAPI document, with their schemas
(docs/metrics.md; docs/api.md, Dashboards)."""

from __future__ import annotations

from obshub.query.aggregate import MAX_TOP
from obshub.query.metrics import DEFAULT_GROUPS, MAX_GROUPS
from obshub.web.openapi.analytics import EXPERIMENT_REQUEST, FUNNEL_REQUEST, GROUP_BY, NULL, RETENTION_REQUEST
from obshub.web.openapi.blocks import (
    COUNT,
    RANGE,
    SEGMENT,
    STR,
    Schema,
    Spec,
    nullable,
    obj,
    ok,
    param,
    path_param,
    read,
    ref,
    request_body,
)

SLUG = [path_param("slug", "the dashboard's slug", SEGMENT)]  # /api/v1/dashboards/{slug}

# -- metrics (docs/metrics.md) ---------------------------------------------------------------------

_METRIC_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
_METRIC_DEFINITION = obj(
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
_METRIC = obj(
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
        "rollup": obj(
            {
                "from": {**nullable(ref("Time")), "description": "the day of the oldest matching event"},
                "computed_to": {**nullable(ref("Time")), "description": "every bucket before is computed"},
                "computed_at": {**nullable(ref("Time")), "description": "the rollup job's last run"},
                "backfilled": {"type": "boolean"},
                "last_error": {"type": ["string", "null"], "description": "why the last run failed"},
            }
        ),
        "current": obj({"1h": _NUMBER_OR_NULL, "1d": _NUMBER_OR_NULL}, description="this hour and UTC day"),
    }
)
_METRIC_POINT = obj({"t": ref("Time"), "count": COUNT, "value": _NUMBER_OR_NULL})
_METRIC_SERIES = obj(
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
            "items": obj({"group": {"type": "string"}, "series": {"type": "array", "items": _METRIC_POINT}}),
        },
    }
)

# -- dashboards (docs/api.md, Dashboards; obshub/query/dashboards.py) ----------------------------

_PANEL_REQUEST = obj(
    {
        "q": {"type": ["string", "null"]},
        "measure": {"type": ["string", "null"], "default": "count"},
        "group_by": {"oneOf": [{"type": "string"}, {"type": "array", "items": GROUP_BY, "maxItems": 2}, NULL]},
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
_EVENTS_PANEL = obj(
    {
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "chart": {"enum": ["line", "bar"], "default": "line"},
        "source": {"enum": ["events"], "default": "events", "description": "where the numbers come from"},
        "request": _PANEL_REQUEST,
    },
    required=("title",),
)
_METRIC_PANEL = obj(
    {
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "chart": {"enum": ["line", "bar"], "default": "line"},
        "source": {"enum": ["metric"], "description": "a defined metric's stored rollup series"},
        "request": obj(
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
    return obj({"analysis": {"const": analysis}, **props}, required=("analysis", *required), description=description)


_SERIES_PANEL_REQUEST = _analysis_request(
    "series",
    obj(
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
_ANALYTICS_PANEL = obj(
    {
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "chart": {"enum": ["line", "bar"], "default": "line", "description": "Trends only; the others draw their own"},
        "source": {"enum": ["analytics"], "description": "a product analysis saved from the Analytics page"},
        "request": {
            "oneOf": [
                _SERIES_PANEL_REQUEST,
                _analysis_request("funnel", FUNNEL_REQUEST, "POST /api/v1/analytics/funnel's body, no range"),
                _analysis_request("retention", RETENTION_REQUEST, "POST /api/v1/analytics/retention's body, no range"),
                _analysis_request(
                    "experiment", EXPERIMENT_REQUEST, "POST /api/v1/analytics/experiment's body, no range"
                ),
            ]
        },
    },
    required=("title", "source", "request"),
)
_PANEL = {"oneOf": [_EVENTS_PANEL, _METRIC_PANEL, _ANALYTICS_PANEL]}
_DASHBOARD = obj(
    {
        "slug": {
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9-]{0,63}$",
            "description": "its URL name; absent: made from the title",
        },
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "time": obj(
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
_DASHBOARD_LIST = obj(
    {
        "dashboards": {
            "type": "array",
            "items": obj(
                {
                    "slug": STR,
                    "title": STR,
                    "panels": COUNT,
                    "public": {"type": "boolean", "description": "published at a read-only link"},
                }
            ),
        }
    }
)

SCHEMAS: dict[str, Schema] = {
    "MetricDefinition": _METRIC_DEFINITION,
    "Metric": _METRIC,
    "MetricSeries": _METRIC_SERIES,
    "Dashboard": _DASHBOARD,
    "DashboardList": _DASHBOARD_LIST,
}

# The specs of the metrics and dashboards routes: obshub.web.openapi merges every area's table.
OPERATIONS: dict[tuple[str, str], Spec] = {
    ("GET", "/api/v1/metrics"): read(
        "The project's metrics defined from queries, with their rollup progress and current values",
        "metrics",
        {
            "200": ok(
                {
                    "type": "object",
                    "required": ["metrics"],
                    "additionalProperties": False,
                    "properties": {"metrics": {"type": "array", "items": ref("Metric")}},
                }
            )
        },
        errors=(),
    ),
    ("POST", "/api/v1/metrics"): read(
        "Define (or replace) a metric; its values are computed by the next rollup runs",
        "metrics",
        {"201": ok(ref("Metric"), "Created"), "200": ok(ref("Metric"), "Replaced the metric of that name")},
        errors=("400", "409"),
        requestBody=request_body(ref("MetricDefinition")),
    ),
    ("DELETE", "/api/v1/metrics/{name}"): read(
        "Delete an API metric and its rollups (config-file metrics: 409)",
        "metrics",
        {
            "200": ok(
                {
                    "type": "object",
                    "required": ["deleted"],
                    "additionalProperties": False,
                    "properties": {"deleted": {"type": "string"}},
                }
            )
        },
        [path_param("name", "the metric's name", SEGMENT)],
        ("404", "409"),
    ),
    ("GET", "/api/v1/metrics/{name}/series"): read(
        "A metric's stored hourly or daily values (docs/metrics.md)",
        "metrics",
        {
            "200": {
                "description": "The series (JSON), or with format=csv one row per stored bucket",
                "content": {
                    "application/json": {"schema": ref("MetricSeries")},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
        [
            path_param("name", "the metric's name", SEGMENT),
            param("metric_interval"),
            *RANGE,
            param("metric_group"),
            param("agg_format"),
        ],
        ("400", "404"),
    ),
    ("GET", "/api/v1/dashboards"): read(
        "The project's dashboards", "dashboards", {"200": ok(ref("DashboardList"))}, errors=()
    ),
    ("POST", "/api/v1/dashboards"): read(
        "Import a dashboard: create it, or replace the one of that slug (a public link stays)",
        "dashboards",
        {"201": ok(ref("Dashboard"), "Created"), "200": ok(ref("Dashboard"), "Replaced the dashboard of that slug")},
        errors=("400", "409"),
        requestBody=request_body(ref("Dashboard")),
    ),
    ("GET", "/api/v1/dashboards/{slug}"): read(
        "Export a dashboard as JSON", "dashboards", {"200": ok(ref("Dashboard"))}, SLUG, ("404",)
    ),
    ("DELETE", "/api/v1/dashboards/{slug}"): read(
        "Delete a dashboard (and end its public link)",
        "dashboards",
        {
            "200": ok(
                {
                    "type": "object",
                    "required": ["deleted"],
                    "additionalProperties": False,
                    "properties": {"deleted": {"type": "string"}},
                }
            )
        },
        SLUG,
        ("404",),
    ),
}

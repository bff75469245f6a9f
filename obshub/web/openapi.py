"""`GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the hub's HTTP API, built from the
routes the app really registers.

`OPERATIONS` holds one spec per (method, path) of the API, the ingest and Sentry endpoints and
the operations routes; `document()` walks the app's routes and fails on a route without a spec
or a spec without a route (tests/test_openapi.py runs it, and checks real answers of both stores
against the schemas; tests/test_fuzz_api.py fuzzes the live API from it). The web UI's pages
(HTML, session cookie) are not part of the API and not in the document. HEAD, which Starlette
adds to every GET route, is left out as docs/api.md leaves it out.

No token is needed to read the document: it describes the API and holds no data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from obshub.web.openapi_schemas import COMPONENTS, ref

__all__ = ["OPERATIONS", "OPS_PATHS", "MissingSpec", "api_routes", "document", "routes"]

Spec = dict[str, Any]

OPS_PATHS = ("/healthz", "/readyz", "/metrics")  # the operations routes outside /api/
_CONVERTER = re.compile(r"\{(\w+):\w+\}")  # `{id:path}` -> `{id}`: OpenAPI names parameters only


# Properties and values look at the event's newest 10,000 occurrences (docs/api.md, Analytics).
_SAMPLED: Spec = {
    "counted": {"type": "integer", "minimum": 0, "description": "occurrences looked at, newest first (at most 10,000)"},
    "approximate": {"type": "boolean", "description": "more occurred in the range than were looked at"},
}


class MissingSpec(Exception):
    """A route without an operation spec, or a spec without a route."""


# -- building blocks --------------------------------------------------------------------------


def _p(name: str) -> Spec:
    return ref(name, "parameters")


def _r(name: str) -> Spec:
    return ref(name, "responses")


def _ok(schema: Spec, description: str = "OK", headers: Spec | None = None) -> Spec:
    out: Spec = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _path_param(name: str, description: str, schema: Spec | None = None) -> Spec:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string", "minLength": 1},
    }


def _body(schema: Spec, media: str = "application/json", **extra: Any) -> Spec:
    return {"required": True, "content": {media: {"schema": schema, **extra}}}


def _encoding(description: str) -> Spec:
    # Not an enum: the name is case-insensitive and an empty header is identity.
    return {
        "name": "Content-Encoding",
        "in": "header",
        "description": f"of the body: {description}",
        "schema": {"type": "string", "examples": ["gzip", "zstd"]},
    }


_READ: list[Spec] = [{"readToken": []}]
_ADMIN: list[Spec] = [{"adminToken": []}]
_NONE: list[Spec] = []
# A read route: 401/403 before anything else; the store's 429/503 on any read.
_READ_ERRORS = {
    "401": _r("Unauthorized"),
    "403": _r("Forbidden"),
    "429": _r("TooManyRequests"),
    "503": _r("Unavailable"),
}


def _read(
    summary: str, tag: str, ok: Spec, params: Sequence[Spec] = (), errors: Iterable[str] = ("400",), **extra: Any
) -> Spec:
    """An operation that takes a read token (or, with `security=_ADMIN` in `extra`, an admin token)."""
    named = {"400": "BadRequest", "404": "NotFound", "409": "Conflict"}
    responses = {**ok, **{code: _r(named[code]) for code in errors}, **_READ_ERRORS}
    out: Spec = {"summary": summary, "tags": [tag], "security": _READ, "responses": responses, **extra}
    if params:
        out["parameters"] = list(params)
    return out


_RANGE = (_p("from"), _p("to"))
# Ids in paths: percent-encode `/ ? # %` (docs/api.md, Pages and caps). A group id or a check
# name holding `/` has no URL: the route matches one path segment.
_SEGMENT = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
NAME = [_path_param("name", "the rule's name", _SEGMENT)]  # /api/v1/alerts/{name}
SLUG = [_path_param("slug", "the dashboard's slug", _SEGMENT)]  # /api/v1/dashboards/{slug}

_AGGREGATE_OK: Spec = {
    "description": "The aggregation (JSON), or with format=csv one row per bucket",
    "content": {"application/json": {"schema": ref("Aggregate")}, "text/csv": {"schema": {"type": "string"}}},
}

# -- ingest -----------------------------------------------------------------------------------

_NDJSON_DOC = (
    "NDJSON: one JSON object per line (`\\n`, `\\r\\n` allowed, blank lines skipped), modelled as an "
    "array of its lines as OpenAPI 3.1 has no sequential media type."
)
_INGEST = {
    "summary": "Store a batch of events (NDJSON)",
    "description": (
        "Each valid line is stored even when others are rejected; a 200 means the accepted "
        "events are durable. " + _NDJSON_DOC
    ),
    "tags": ["ingest"],
    "security": [{"ingestToken": []}],
    "parameters": [
        _encoding("identity (also empty or absent), gzip (x-gzip) or zstd; any other is a 415"),
        {
            "name": "X-Obshub-Sent-At",
            "in": "header",
            "schema": {"type": "string"},
            "description": "the sender's clock when sending, epoch seconds (decimals allowed): feeds the "
            "per-host clock skew estimate; ignored when unreadable",
        },
    ],
    # Any JSON value makes a line: one that is not a valid event is rejected in the answer (a 200),
    # so the body's schema accepts every line and `EventIn` says what a stored one looks like.
    "requestBody": _body(
        {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    ref("EventIn"),
                    {"description": "anything else: the line is rejected, with the reason, in `rejected`"},
                ]
            },
        },
        "application/x-ndjson",
    ),
    "responses": {
        "200": _ok(ref("IngestAnswer"), "The body was read: `accepted`, `duplicates` and the `rejected` lines"),
        "400": _r("BadRequest"),
        "401": _r("Unauthorized"),
        "403": _r("Forbidden"),
        "408": _r("TooSlow"),
        "413": {
            "description": "Over a limit: body as sent, decoded, or lines per request",
            "content": {"application/json": {"schema": ref("Error")}},
        },
        "415": {
            "description": "An unsupported Content-Encoding",
            "content": {"application/json": {"schema": ref("Error")}},
        },
        "429": _r("TooManyRequests"),
        "503": _r("Unavailable"),
    },
}

_SENTRY_KEYS: list[Spec] = [{"sentryAuth": []}, {"sentryKey": []}, {"ingestToken": []}]
_SENTRY_ANSWERS = {
    "200": _ok(
        ref("SentryAnswer"),
        "Stored (or already stored): the event id, `null` for none",
        {"Access-Control-Allow-Origin": {"required": True, "schema": {"const": "*"}}},
    ),
    "400": _r("SentryBadRequest"),
    "401": _r("SentryUnauthorized"),
    "403": _r("SentryForbidden"),
    "404": _r("NoProject"),
    "408": _r("SentryTooSlow"),
    "413": _r("SentryTooLarge"),
    "415": _r("SentryUnsupportedEncoding"),
    "429": _r("SentryTooManyRequests"),
    "503": _r("SentryUnavailable"),
}
_PROJECT_ID = _path_param("project_id", "the project's number", {"type": "integer", "minimum": 0})
_SENTRY_ENCODING = _encoding("identity (also empty or absent), gzip (x-gzip), deflate, br or zstd; any other is a 415")
_ENVELOPE_EXAMPLE = (
    '{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n{"type":"event"}\n'
    '{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","level":"error","message":"boom"}\n'
)


def _preflight(what: str) -> Spec:
    return {
        "summary": f"CORS preflight of {what}",
        "tags": ["sentry"],
        "security": _NONE,
        "parameters": [_PROJECT_ID],
        "responses": {
            "200": {
                "description": "No body; the CORS headers browser SDKs need",
                "headers": {
                    "Access-Control-Allow-Origin": {"required": True, "schema": {"const": "*"}},
                    "Access-Control-Allow-Methods": {"required": True, "schema": {"const": "POST, OPTIONS"}},
                    "Access-Control-Max-Age": {"required": True, "schema": {"const": "3600"}},
                },
            },
            "404": _r("NoProject"),
        },
    }


# -- OTLP/HTTP (obshub/ingest/otlp/, docs/otlp.md) ------------------------------------------

_PB = "application/x-protobuf"
_PB_BODY: Spec = {"type": "string", "format": "binary"}
_RPC_STATUS: Spec = {
    "type": "object",
    "description": "a google.rpc.Status (as protobuf for a protobuf request)",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["code", "message"],
}


def _otlp_status(description: str, headers: Spec | None = None) -> Spec:
    out: Spec = {
        "description": description,
        "content": {"application/json": {"schema": _RPC_STATUS}, _PB: {"schema": _PB_BODY}},
    }
    if headers:
        out["headers"] = headers
    return out


def _otlp(signal: str, top: str, rejected: str, prefix: str) -> Spec:
    retry = {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": r"^\d+$"}}}
    answer = {
        "type": "object",
        "description": f"an Export{signal}ServiceResponse: empty, or `partialSuccess` with the records refused",
        "properties": {
            "partialSuccess": {
                "type": "object",
                "properties": {rejected: {"type": "string", "pattern": r"^\d+$"}, "errorMessage": {"type": "string"}},
                "required": [rejected, "errorMessage"],
            }
        },
        "additionalProperties": False,
    }
    return {
        "summary": f"OTLP/HTTP {signal.lower()} export{' (under the /otlp prefix)' if prefix else ''}",
        "description": "What an OpenTelemetry SDK or Collector sends (docs/otlp.md): protobuf or proto3 JSON "
        "(hex ids, 64-bit integers as strings). Every valid record is stored; the others are counted in "
        "`partialSuccess`. Errors are a google.rpc.Status in the request's encoding.",
        "tags": ["otlp"],
        "security": [{"ingestToken": []}],
        "parameters": [
            _encoding("identity (also empty or absent), gzip (x-gzip), deflate or zstd; any other is a 415")
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    # null is proto3 JSON's "not set", as an absent field: nothing to store
                    "schema": {
                        "type": "object",
                        "properties": {top: {"type": ["array", "null"], "items": {"type": "object"}}},
                    }
                },
                _PB: {},  # raw bytes: OpenAPI 3.1 gives a binary body no schema
            },
        },
        "responses": {
            "200": {
                "description": "Stored: every valid record is durable",
                "content": {"application/json": {"schema": answer}, _PB: {"schema": _PB_BODY}},
            },
            "400": _otlp_status("A malformed body (not the protobuf or JSON of the request)"),
            "401": _otlp_status(
                "No, an unknown or a revoked token",
                {"WWW-Authenticate": {"required": True, "schema": {"const": "Bearer"}}},
            ),
            "403": _otlp_status("A token of another scope"),
            "408": _otlp_status("The body came too slowly; the hub closes the connection"),
            "413": _otlp_status("Over a limit: body as sent, decoded, or records per request"),
            "415": _otlp_status(
                "A Content-Type other than application/x-protobuf or application/json, or an unknown Content-Encoding"
            ),
            "429": _otlp_status("No ingest slot came free, or the store pushes back (retryable)", retry),
            "503": _otlp_status("The store is unavailable; nothing was acknowledged (retryable)", retry),
        },
    }


_OTLP = {
    ("POST", f"{prefix}/v1/{path}"): _otlp(signal, top, rejected, prefix)
    for prefix in ("", "/otlp")
    for path, signal, top, rejected in (
        ("logs", "Logs", "resourceLogs", "rejectedLogRecords"),
        ("traces", "Trace", "resourceSpans", "rejectedSpans"),
    )
}


# -- the table --------------------------------------------------------------------------------

OPERATIONS: dict[tuple[str, str], Spec] = {
    ("POST", "/api/v1/ingest"): _INGEST,
    **_OTLP,
    ("POST", "/api/{project_id}/envelope/"): {
        "summary": "Sentry envelope (what sentry-sdk sends to a DSN)",
        "description": (
            "A header line, then items: an item header line (`type`, optional `length`) and its "
            "payload. `event` items are stored as `kind=error` events, every other item type is "
            "accepted and skipped. The key may also be the user part of the envelope header's "
            "`dsn`, checked once the body is read (hence the empty security requirement)."
        ),
        "tags": ["sentry"],
        "security": [*_SENTRY_KEYS, {}],
        "parameters": [_PROJECT_ID, _SENTRY_ENCODING],
        "requestBody": _body({"type": "string"}, "application/x-sentry-envelope", example=_ENVELOPE_EXAMPLE),
        "responses": _SENTRY_ANSWERS,
    },
    ("POST", "/api/{project_id}/store/"): {
        "summary": "One Sentry event (the legacy store endpoint)",
        "tags": ["sentry"],
        "security": _SENTRY_KEYS,
        "parameters": [_PROJECT_ID, _SENTRY_ENCODING],
        "requestBody": _body(ref("SentryEvent")),
        "responses": _SENTRY_ANSWERS,
    },
    ("OPTIONS", "/api/{project_id}/envelope/"): _preflight("the envelope endpoint"),
    ("OPTIONS", "/api/{project_id}/store/"): _preflight("the store endpoint"),
    ("GET", "/api/v1/search"): _read(
        "Search events, one page at a time",
        "query",
        {"200": _ok(ref("SearchPage"))},
        [_p("q"), *_RANGE, _p("search_limit"), _p("order"), _p("cursor")],
    ),
    ("GET", "/api/v1/trace/{id}"): _read(
        "Every event of a request or trace id, on every host, oldest first",
        "query",
        {"200": _ok(ref("Trace"))},
        [_path_param("id", "a request_id or trace_id (may contain `/`)"), *_RANGE],
    ),
    ("GET", "/api/v1/users/{user_id}/timeline"): _read(
        "One page of a user's journey: their requests, newest pages first",
        "query",
        {"200": _ok(ref("Timeline"))},
        [_path_param("user_id", "the user id (may contain `/`)"), *_RANGE, _p("timeline_limit"), _p("cursor")],
    ),
    ("GET", "/api/v1/export"): _read(
        "Every match, oldest first, streamed as CSV or NDJSON",
        "query",
        {
            "200": {
                "description": "The export, streamed (chunked). A store failure mid-stream ends the transfer "
                "without its final chunk.",
                "headers": {
                    "Content-Disposition": {"required": True, "schema": {"type": "string"}},
                    "X-Obshub-Export-To": {
                        "required": True,
                        "schema": ref("Time"),
                        "description": "where this export ends: the next one's `from`",
                    },
                },
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {
                        "schema": {"type": "array", "items": ref("Event"), "description": "one event per line"}
                    },
                },
            }
        },
        [_p("q"), *_RANGE, _p("format"), _p("columns"), _p("spreadsheet")],
    ),
    ("GET", "/api/v1/errors"): _read(
        "Error groups, most recently seen first",
        "errors",
        {
            "200": _ok(
                {
                    "type": "object",
                    "properties": {"groups": {"type": "array", "items": ref("Group")}},
                    "required": ["groups"],
                    "additionalProperties": False,
                }
            )
        },
        [_p("state"), _p("q"), *_RANGE, _p("groups_limit")],
    ),
    ("GET", "/api/v1/errors/{id}"): _read(
        "One error group with its newest occurrences",
        "errors",
        {"200": _ok(ref("GroupDetail"))},
        [_path_param("id", "a group id (a merged one stands for its target)", _SEGMENT)],
        ("404",),
    ),
    ("PATCH", "/api/v1/errors/{id}"): _read(
        "Set a group's state",
        "errors",
        {"200": _ok(ref("GroupDetail"))},
        [_path_param("id", "a group id", _SEGMENT)],
        ("400", "404", "409"),
        requestBody=_body(
            {
                "type": "object",
                "required": ["state"],
                "properties": {"state": {"enum": ["unresolved", "resolved", "ignored"]}},
            }
        ),
    ),
    ("POST", "/api/v1/errors/{id}/merge"): _read(
        "Merge groups into this one",
        "errors",
        {"200": _ok(ref("GroupDetail"))},
        [_path_param("id", "the target group id", _SEGMENT)],
        ("400", "404", "409"),
        requestBody=_body(
            {
                "type": "object",
                "required": ["groups"],
                "properties": {"groups": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
            }
        ),
    ),
    ("GET", "/api/v1/analytics/events"): _read(
        "Analytics event names by count",
        "analytics",
        {
            "200": _ok(
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
        [*_RANGE, _p("analytics_limit")],
    ),
    ("GET", "/api/v1/analytics/properties"): _read(
        "The attribute keys an analytics event has",
        "analytics",
        {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["properties", *_SAMPLED],
                    "additionalProperties": False,
                    "properties": {"properties": {"type": "array", "items": {"type": "string"}}, **_SAMPLED},
                }
            )
        },
        [_p("event"), *_RANGE],
    ),
    ("GET", "/api/v1/analytics/values"): _read(
        "A property's most frequent values",
        "analytics",
        {
            "200": _ok(
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
        [_p("event"), _p("property"), *_RANGE, _p("analytics_limit")],
    ),
    ("GET", "/api/v1/analytics/series"): _read(
        "Counts per time bucket, zeros included",
        "analytics",
        {
            "200": _ok(
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
            _p("series_event"),
            _p("q"),
            _p("breakdown"),
            _p("series_top"),
            _p("interval"),
            _p("from"),
            _p("to"),
            _p("unique"),
        ],
    ),
    ("POST", "/api/v1/analytics/funnel"): _read(
        "A funnel: users per step, conversion, median time to convert (docs/analytics.md)",
        "analytics",
        {"200": _ok(ref("Funnel"))},
        requestBody=_body(ref("FunnelRequest")),
    ),
    ("POST", "/api/v1/analytics/retention"): _read(
        "Retention cohorts by day or week of a start event: the triangle table and the curve",
        "analytics",
        {"200": _ok(ref("Retention"))},
        requestBody=_body(ref("RetentionRequest")),
    ),
    ("POST", "/api/v1/analytics/experiment"): _read(
        "A/B comparison of a funnel's conversion per variant: difference, z-test, 95% interval",
        "analytics",
        {"200": _ok(ref("Experiment"))},
        requestBody=_body(ref("ExperimentRequest")),
    ),
    ("POST", "/api/v1/analytics/paths"): _read(
        "User paths: the most common next events after an event, per user or session",
        "analytics",
        {"200": _ok(ref("Paths"))},
        requestBody=_body(ref("PathsRequest")),
    ),
    ("GET", "/api/v1/aggregate"): _read(
        "A measure by group and time bucket (docs/aggregate.md)",
        "analytics",
        {"200": _AGGREGATE_OK},
        [_p("q"), *_RANGE, _p("measure"), _p("group_by"), _p("top"), _p("agg_interval"), _p("agg_format")],
    ),
    ("POST", "/api/v1/aggregate"): _read(
        "The same aggregation, its parameters as a JSON body",
        "analytics",
        {"200": _AGGREGATE_OK},
        requestBody=_body(ref("AggregateRequest")),
    ),
    ("GET", "/api/v1/metrics"): _read(
        "The project's metrics defined from queries, with their rollup progress and current values",
        "metrics",
        {
            "200": _ok(
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
    ("POST", "/api/v1/metrics"): _read(
        "Define (or replace) a metric; its values are computed by the next rollup runs",
        "metrics",
        {"201": _ok(ref("Metric"), "Created"), "200": _ok(ref("Metric"), "Replaced the metric of that name")},
        errors=("400", "409"),
        requestBody=_body(ref("MetricDefinition")),
    ),
    ("DELETE", "/api/v1/metrics/{name}"): _read(
        "Delete an API metric and its rollups (config-file metrics: 409)",
        "metrics",
        {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["deleted"],
                    "additionalProperties": False,
                    "properties": {"deleted": {"type": "string"}},
                }
            )
        },
        [_path_param("name", "the metric's name", _SEGMENT)],
        ("404", "409"),
    ),
    ("GET", "/api/v1/metrics/{name}/series"): _read(
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
            _path_param("name", "the metric's name", _SEGMENT),
            _p("metric_interval"),
            *_RANGE,
            _p("metric_group"),
            _p("agg_format"),
        ],
        ("400", "404"),
    ),
    ("GET", "/api/v1/dashboards"): _read(
        "The project's dashboards", "dashboards", {"200": _ok(ref("DashboardList"))}, errors=()
    ),
    ("POST", "/api/v1/dashboards"): _read(
        "Import a dashboard: create it, or replace the one of that slug (a public link stays)",
        "dashboards",
        {"201": _ok(ref("Dashboard"), "Created"), "200": _ok(ref("Dashboard"), "Replaced the dashboard of that slug")},
        errors=("400", "409"),
        requestBody=_body(ref("Dashboard")),
    ),
    ("GET", "/api/v1/dashboards/{slug}"): _read(
        "Export a dashboard as JSON", "dashboards", {"200": _ok(ref("Dashboard"))}, SLUG, ("404",)
    ),
    ("DELETE", "/api/v1/dashboards/{slug}"): _read(
        "Delete a dashboard (and end its public link)",
        "dashboards",
        {
            "200": _ok(
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
    ("GET", "/api/v1/checks"): _read(
        "The project's uptime checks with their status",
        "checks",
        {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["checks"],
                    "additionalProperties": False,
                    "properties": {"checks": {"type": "array", "items": ref("Check")}},
                }
            )
        },
        errors=(),
    ),
    ("POST", "/api/v1/checks"): _read(
        "Define (or replace) an uptime check (admin token)",
        "checks",
        {"201": _ok(ref("Check"), "Created"), "200": _ok(ref("Check"), "Replaced the check of that name")},
        errors=("400", "409"),
        requestBody=_body(ref("CheckDefinition")),
        security=_ADMIN,
    ),
    ("DELETE", "/api/v1/checks/{name}"): _read(
        "Delete an uptime check (admin token; its past results stay searchable)",
        "checks",
        {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["deleted"],
                    "additionalProperties": False,
                    "properties": {"deleted": {"type": "string"}},
                }
            )
        },
        [_path_param("name", "the check's name", _SEGMENT)],
        ("404", "409"),
        security=_ADMIN,
    ),
    ("GET", "/api/v1/alerts"): _read(
        "The project's alert rules with their state",
        "alerts",
        {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["alerts", "delivery"],
                    "additionalProperties": False,
                    "properties": {
                        "alerts": {"type": "array", "items": ref("AlertRule")},
                        "delivery": {"oneOf": [ref("AlertDelivery"), {"type": "null"}]},
                    },
                }
            )
        },
        errors=(),
    ),
    ("POST", "/api/v1/alerts"): _read(
        "Define (or replace) an alert rule",
        "alerts",
        {"201": _ok(ref("AlertRule"), "Created"), "200": _ok(ref("AlertRule"), "Replaced the rule of that name")},
        errors=("400", "409"),
        requestBody=_body(ref("AlertDefinition")),
    ),
    ("GET", "/api/v1/alerts/{name}"): _read(
        "One alert rule with its state", "alerts", {"200": _ok(ref("AlertRule"))}, NAME, ("404",)
    ),
    ("DELETE", "/api/v1/alerts/{name}"): _read(
        "Delete an API alert rule and its state (config-file rules: 409)",
        "alerts",
        {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["deleted"],
                    "additionalProperties": False,
                    "properties": {"deleted": {"type": "string"}},
                }
            )
        },
        NAME,
        ("404", "409"),
    ),
    ("POST", "/api/v1/alerts/{name}/mute"): _read(
        "Mute a rule's notifications for a while (its state still changes)",
        "alerts",
        {"200": _ok(ref("AlertRule"))},
        NAME,
        ("400", "404"),
        requestBody=_body(ref("AlertMute")),
    ),
    ("POST", "/api/v1/alerts/{name}/unmute"): _read(
        "End a rule's mute", "alerts", {"200": _ok(ref("AlertRule"))}, NAME, ("404",)
    ),
    ("GET", "/api/v1/alerts/{name}/history"): _read(
        "A rule's state changes, newest first (the last 50 of each instance)",
        "alerts",
        {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["name", "history"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "history": {"type": "array", "items": ref("AlertChange")},
                    },
                }
            )
        },
        NAME,
        ("404",),
    ),
    ("GET", "/api/v1/openapi.json"): {
        "summary": "This document",
        "tags": ["meta"],
        "security": _NONE,
        "responses": {"200": _ok({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI 3.1")},
    },
    ("GET", "/healthz"): {
        "summary": "Liveness: the process serves requests",
        "tags": ["operations"],
        "security": _NONE,
        "responses": {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["status"],
                    "additionalProperties": False,
                    "properties": {"status": {"const": "ok"}},
                }
            )
        },
    },
    ("GET", "/readyz"): {
        "summary": "Readiness: the store answers a ping within 5 s",
        "description": "Without a token only the status; with a read token of any project also which store"
        " (200) and why it is not ready (503).",
        "tags": ["operations"],
        "security": _NONE,
        "responses": {
            "200": _ok(
                {
                    "type": "object",
                    "required": ["status"],
                    "additionalProperties": False,
                    "properties": {
                        "status": {"const": "ready"},
                        "store": {
                            "type": "string",
                            "description": "the store URL (of one with credentials, the part after @); "
                            "only with a read token",
                        },
                    },
                }
            ),
            "503": {
                "description": "The store is not ready",
                "content": {"application/json": {"schema": ref("Error")}},
                "headers": {"Retry-After": {"required": True, "schema": {"const": "5"}}},
            },
        },
    },
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics (text format)",
        "tags": ["operations"],
        "security": _NONE,
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
}

_INFO = {
    "title": "obshub HTTP API",
    "summary": "Ingest (native and Sentry), queries, error groups, analytics, dashboards, uptime checks, alerts, "
    "operations.",
    "description": (
        "The complete human reference is docs/api.md. Every error of the JSON routes is "
        '`{"error": "<text>"}` whose text names the parameter or field at fault (a syntax error in `q` adds '
        '`column`); the Sentry routes answer `{"detail": "<text>"}` as Sentry\'s Relay does. 429 and 503 '
        "carry `Retry-After`. Every GET route also answers HEAD. The web UI's routes (HTML, session cookie) are "
        "not part of this document."
    ),
    "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
}


def api_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """(method, OpenAPI path) of every route the document must describe: the /api/ routes, the
    OTLP ones (/v1/, /otlp/v1/) and the operations routes, HEAD left out; the web UI's pages are
    not part of the API."""
    out: list[tuple[str, str]] = []
    for route in routes:
        if not isinstance(route, Route):
            continue  # the UI's static files (a Mount)
        path = _CONVERTER.sub(r"{\1}", route.path)
        if path.startswith(("/api/", "/v1/", "/otlp/")) or path in OPS_PATHS:
            out += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return out


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of these routes; MissingSpec when a route and the table disagree."""
    return orjson.loads(_encoded(tuple(api_routes(routes))))  # type: ignore[no-any-return]


def _version() -> str:
    try:
        return version("obshub")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


@cache
def _encoded(registered: tuple[tuple[str, str], ...]) -> bytes:
    missing = [f"{m} {p}" for m, p in registered if (m, p) not in OPERATIONS]
    stale = [f"{m} {p}" for m, p in OPERATIONS if (m, p) not in registered]
    if missing or stale:
        raise MissingSpec(f"routes without a spec in obshub/web/openapi.py: {missing}; specs without a route: {stale}")
    paths: dict[str, dict[str, Spec]] = {}
    for method, path in registered:
        op = OPERATIONS[(method, path)]
        op_id = re.sub(r"[^A-Za-z0-9]+", "_", f"{method.lower()}{path}").strip("_")
        paths.setdefault(path, {})[method.lower()] = {"operationId": op_id, **op}
    doc = {"openapi": "3.1.0", "info": {**_INFO, "version": _version()}, "paths": paths, "components": COMPONENTS}
    return orjson.dumps(doc)


async def openapi_json(request: Request) -> Response:
    """No token: the document describes the API and holds no data."""
    return Response(_encoded(tuple(api_routes(request.app.routes))), media_type="application/json")


routes = [Route("/api/v1/openapi.json", openapi_json)]

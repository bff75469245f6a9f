"""The reusable parts of the OpenAPI document (`components`): JSON Schema 2020-12 for what the
routes take and answer (each API area's module holds its own), parameters and error answers
shared by several routes.

Bounds and enums come from the code that enforces them (`obshub.events`, `obshub.query.*`), so
the document changes with the code. Answers the hub builds with fixed keys are closed
(`additionalProperties: false`): a field added to an answer but not here fails the conformance
test (tests/test_openapi.py) and the fuzz run instead of going undocumented.
"""

from __future__ import annotations

from typing import Any

from obshub.query.aggregate import AUTO_BUCKETS, MAX_BUCKETS, MAX_CELLS, MAX_TOP
from obshub.query.errors import GROUP_STATES
from obshub.query.export import FORMATS, MAX_COLUMNS
from obshub.query.metrics import MAX_SERIES_BUCKETS
from obshub.query.search import MAX_DEPTH, MAX_LIMIT, MAX_TERMS, TIMELINE_LIMIT, TIMELINE_MAX_LIMIT
from obshub.query.times import MAX_INTERVAL_US
from obshub.web.openapi import alerts, analytics, ingest, metrics, query
from obshub.web.openapi.blocks import COUNT, STR, Schema, obj, ref

__all__ = ["COMPONENTS"]


# format_ts: RFC 3339 in UTC with exactly six fraction digits, so times sort as strings.
_TIME: Schema = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$",
    "examples": ["2026-11-23T19:14:02.123456Z"],
}

# -- answers of the other routes --------------------------------------------------------------

_ERROR = obj(
    {
        "error": {"type": "string", "description": "starts with the parameter or field at fault"},
        "column": {"type": "integer", "minimum": 1, "description": "syntax errors in `q` only: the 1-based position"},
    },
    required=("error",),
)
_SENTRY_ERROR = obj(
    {
        "detail": STR,
        "id": {"type": ["string", "null"], "description": "malformed items: the envelope's event id"},
        "stored": {**COUNT, "description": "malformed items: the valid events kept"},
    },
    required=("detail",),
)

# The order is the document's: every area's schemas beside the answers they share.
SCHEMAS: dict[str, Schema] = {
    "Time": _TIME,
    **ingest.EVENT_SCHEMAS,
    **query.SCHEMAS,
    **alerts.SCHEMAS,
    **ingest.SENTRY_SCHEMAS,
    "Error": _ERROR,
    "SentryError": _SENTRY_ERROR,
    **analytics.SCHEMAS,
    **metrics.SCHEMAS,
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

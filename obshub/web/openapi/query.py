"""The query routes of the OpenAPI document: search, trace, user timeline, export and error
groups, with the schemas of their answers."""

from __future__ import annotations

from obshub.query.errors import GROUP_STATES
from obshub.web.openapi.blocks import (
    COUNT,
    NULLABLE_STR,
    RANGE,
    SEGMENT,
    STR,
    STRINGS,
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

_SEARCH_PAGE = obj({"events": {"type": "array", "items": ref("Event")}, "next_cursor": {"type": ["string", "null"]}})

_SKEW: Schema = {
    "type": "object",
    "additionalProperties": {"type": "integer"},
    "description": "per host: estimated clock offset in ms (host - hub), 0 when unknown",
}

_SPAN_LOG = obj({"id": STR, "offset_ms": {"type": "number"}, "error": {"type": "boolean"}, "message": NULLABLE_STR})
# One span of the waterfall (obshub/query/spans.py): flat, in tree order, times corrected.
_SPAN = obj(
    {
        "id": STR,
        "span_id": NULLABLE_STR,
        "parent_id": NULLABLE_STR,
        "name": NULLABLE_STR,
        "service": NULLABLE_STR,
        "host": NULLABLE_STR,
        "span_kind": NULLABLE_STR,
        "status": STR,
        "status_message": NULLABLE_STR,
        "start": ref("Time"),
        "offset_ms": {"type": "number", "minimum": 0},
        "duration_ms": {"type": "number", "minimum": 0},
        "self_ms": {"type": "number", "minimum": 0},
        "slowest": {"type": "boolean"},
        "depth": COUNT,
        "orphan": {"type": "boolean"},
        "critical": {"type": "boolean"},
        "before_parent": {"type": "boolean"},
        "logs": {"type": "array", "items": _SPAN_LOG},
    }
)

_TRACE = obj(
    {
        "id": STR,
        "events": {"type": "array", "items": ref("Event")},
        "hosts": STRINGS,
        "services": STRINGS,
        "start": nullable(ref("Time")),
        "end": nullable(ref("Time")),
        "error_count": COUNT,
        "truncated": {"type": "boolean"},
        "skew_ms": _SKEW,
        "spans": {"type": "array", "items": ref("Span")},
    }
)

_TIMELINE_REQUEST = obj(
    {
        "request_id": STR,
        "hosts": STRINGS,
        "services": STRINGS,
        "start": ref("Time"),
        "end": ref("Time"),
        "events": COUNT,
        "errors": COUNT,
        "previous_host": {"type": ["string", "null"]},
        "host_switch": {"type": "boolean"},
        "truncated": {"type": "boolean"},
    }
)

_TIMELINE = obj(
    {
        "user_id": STR,
        "requests": {"type": "array", "items": ref("TimelineRequest")},
        "events": {"type": "array", "items": ref("Event")},
        "host_switches": COUNT,
        "truncated": {"type": "boolean"},
        "skew_ms": _SKEW,
        "total_requests": COUNT,
        "total_requests_capped": {"type": "boolean"},
        "next_cursor": {"type": ["string", "null"]},
    }
)

_GROUP_FIELDS: dict[str, Schema] = {
    "id": STR,
    "title": STR,
    "type": {"type": ["string", "null"]},
    "culprit": {"type": ["string", "null"]},
    "count": COUNT,
    "users": COUNT,
    "hosts": STRINGS,
    "first_seen": ref("Time"),
    "last_seen": nullable(ref("Time")),
    "state": {"enum": list(GROUP_STATES)},
    "level": STR,
    "version": STR,
    "is_new": {"type": "boolean"},
    "regressed": {"type": "boolean"},
    "regressed_at": nullable(ref("Time")),
    "merged": STRINGS,
}
_OCCURRENCE = obj(
    {
        "id": STR,
        "ts": ref("Time"),
        "host": NULLABLE_STR,
        "service": NULLABLE_STR,
        "request_id": NULLABLE_STR,
        "trace_id": NULLABLE_STR,
        "user_id": NULLABLE_STR,
        "release": NULLABLE_STR,
    }
)
_GROUP_DETAIL = obj(
    {
        **_GROUP_FIELDS,
        "latest_event": nullable(ref("Event")),
        "occurrences": {"type": "array", "maxItems": 50, "items": ref("Occurrence")},
    }
)

SCHEMAS: dict[str, Schema] = {
    "SearchPage": _SEARCH_PAGE,
    "Trace": _TRACE,
    "Span": _SPAN,
    "Timeline": _TIMELINE,
    "TimelineRequest": _TIMELINE_REQUEST,
    "Group": obj(_GROUP_FIELDS),
    "GroupDetail": _GROUP_DETAIL,
    "Occurrence": _OCCURRENCE,
}

# The specs of the query routes: obshub.web.openapi merges every area's table.
OPERATIONS: dict[tuple[str, str], Spec] = {
    ("GET", "/api/v1/search"): read(
        "Search events, one page at a time",
        "query",
        {"200": ok(ref("SearchPage"))},
        [param("q"), *RANGE, param("search_limit"), param("order"), param("cursor")],
    ),
    ("GET", "/api/v1/trace/{id}"): read(
        "Every event of a request or trace id, on every host, oldest first",
        "query",
        {"200": ok(ref("Trace"))},
        [path_param("id", "a request_id or trace_id (may contain `/`)"), *RANGE],
    ),
    ("GET", "/api/v1/users/{user_id}/timeline"): read(
        "One page of a user's journey: their requests, newest pages first",
        "query",
        {"200": ok(ref("Timeline"))},
        [path_param("user_id", "the user id (may contain `/`)"), *RANGE, param("timeline_limit"), param("cursor")],
    ),
    ("GET", "/api/v1/export"): read(
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
        [param("q"), *RANGE, param("format"), param("columns"), param("spreadsheet")],
    ),
    ("GET", "/api/v1/errors"): read(
        "Error groups, most recently seen first",
        "errors",
        {
            "200": ok(
                {
                    "type": "object",
                    "properties": {"groups": {"type": "array", "items": ref("Group")}},
                    "required": ["groups"],
                    "additionalProperties": False,
                }
            )
        },
        [param("state"), param("q"), *RANGE, param("groups_limit")],
    ),
    ("GET", "/api/v1/errors/{id}"): read(
        "One error group with its newest occurrences",
        "errors",
        {"200": ok(ref("GroupDetail"))},
        [path_param("id", "a group id (a merged one stands for its target)", SEGMENT)],
        ("404",),
    ),
    ("PATCH", "/api/v1/errors/{id}"): read(
        "Set a group's state",
        "errors",
        {"200": ok(ref("GroupDetail"))},
        [path_param("id", "a group id", SEGMENT)],
        ("400", "404", "409"),
        requestBody=request_body(
            {
                "type": "object",
                "required": ["state"],
                "properties": {"state": {"enum": ["unresolved", "resolved", "ignored"]}},
            }
        ),
    ),
    ("POST", "/api/v1/errors/{id}/merge"): read(
        "Merge groups into this one",
        "errors",
        {"200": ok(ref("GroupDetail"))},
        [path_param("id", "the target group id", SEGMENT)],
        ("400", "404", "409"),
        requestBody=request_body(
            {
                "type": "object",
                "required": ["groups"],
                "properties": {"groups": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
            }
        ),
    ),
}

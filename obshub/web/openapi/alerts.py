"""The uptime checks and alert rules routes of the OpenAPI document, with their schemas
(docs/alerting.md)."""

from __future__ import annotations

from obshub.uptime.model import DEFAULT_INTERVAL_S, DEFAULT_TIMEOUT_S, MAX_INTERVAL_S, MAX_TIMEOUT_S, MIN_INTERVAL_S
from obshub.web.openapi.blocks import (
    ADMIN,
    COUNT,
    NULLABLE_STR,
    SEGMENT,
    STR,
    Schema,
    Spec,
    nullable,
    obj,
    ok,
    path_param,
    read,
    ref,
    request_body,
)

NAME = [path_param("name", "the rule's name", SEGMENT)]  # /api/v1/alerts/{name}

_CHECK_NAME: Schema = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
_STATUS_CODE: Schema = {"type": "integer", "minimum": 100, "maximum": 599}
_CHECK_DEFINITION = obj(
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
_CHECK = obj(
    {
        "name": STR,
        "target": {"type": "string", "description": "a password in it is shown as ***"},
        "up": {"type": ["boolean", "null"]},
        "last_checked": nullable(ref("Time")),
        "latency_ms": {"type": ["number", "null"]},
        "status": {"type": ["integer", "null"]},
        "message": NULLABLE_STR,
        "uptime_24h": _PERCENT,
        "uptime_7d": _PERCENT,
        "uptime_30d": _PERCENT,
        "interval_s": {"type": "integer"},
        "timeout_s": {"type": "number"},
        "expect_status": {"type": ["array", "null"], "items": {"type": "integer"}},
        "expect_body": NULLABLE_STR,
        "source": {"enum": ["config", "api"]},
        "public": {"type": "boolean", "description": "on the project's public status page"},
        "tls_expires_at": {
            **nullable(ref("Time")),
            "description": "https: when the target's certificate expires, from the newest result",
        },
    }
)

# -- alert rules (docs/alerting.md) ------------------------------------------------------------

_DURATION: Schema = {
    "oneOf": [{"type": "string", "examples": ["30s", "5m", "2h", "1d"]}, {"type": "number", "minimum": 0}],
    "description": "a duration: 30s, 5m, 2h, 1d (or seconds)",
}
_ALERT_DEFINITION = obj(
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
_ALERT_INSTANCE = obj(
    {
        "instance": {"type": ["string", "null"], "description": "the group id or check name; null for a rule with one"},
        "state": _ALERT_STATE,
        "active_since": nullable(ref("Time")),
        "fired_at": nullable(ref("Time")),
        "resolved_at": nullable(ref("Time")),
        "value": {"type": ["number", "null"]},
        "summary": NULLABLE_STR,
        "fired": COUNT,
    }
)
_ALERT_RULE = obj(
    {
        "name": STR,
        "kind": {"enum": ["error", "check", "threshold", "absence", "metric"]},
        "source": {"enum": ["config", "api"]},
        "state": {"enum": ["ok", "pending", "firing", "muted"]},
        "alert_state": {"enum": ["ok", "pending", "firing"]},
        "muted_until": nullable(ref("Time")),
        "labels": {"type": "object", "additionalProperties": STR},
        "annotation": STR,
        "query": NULLABLE_STR,
        "definition": {"type": "object", "description": "the rule's keys as defined"},
        "last_evaluation": nullable(ref("Time")),
        "last_value": {"type": ["number", "null"]},
        "last_error": NULLABLE_STR,
        "fired": COUNT,
        "instances": {"type": "array", "items": _ALERT_INSTANCE},
    }
)
_ALERT_DELIVERY = obj(
    {
        "hub": NULLABLE_STR,
        "updated_at": ref("Time"),
        "notifiers": {
            "type": "array",
            "items": obj(
                {
                    "name": STR,
                    "type": {"enum": ["alertmanager", "webhook", "slack", "email"]},
                    "target": {"type": "string", "description": "where it sends, secrets masked"},
                    "sent": COUNT,
                    "failed": COUNT,
                    "rejected": COUNT,
                    "dropped": COUNT,
                    "pending": COUNT,
                    "last_ok_at": nullable(ref("Time")),
                    "last_error": NULLABLE_STR,
                    "last_error_at": nullable(ref("Time")),
                }
            ),
        },
    }
)
_ALERT_CHANGE = obj(
    {
        "at": ref("Time"),
        "instance": NULLABLE_STR,
        "from": _ALERT_STATE,
        "to": _ALERT_STATE,
        "value": {"type": ["number", "null"]},
    }
)
_ALERT_MUTE = {
    "oneOf": [
        obj({"for": _DURATION}),
        obj({"until": {"type": ["string", "integer"], "description": "RFC 3339 or epoch, within a year"}}),
    ]
}

SCHEMAS: dict[str, Schema] = {
    "CheckDefinition": _CHECK_DEFINITION,
    "Check": _CHECK,
    "AlertDefinition": _ALERT_DEFINITION,
    "AlertRule": _ALERT_RULE,
    "AlertDelivery": _ALERT_DELIVERY,
    "AlertChange": _ALERT_CHANGE,
    "AlertMute": _ALERT_MUTE,
}

# The specs of the checks and alerts routes: obshub.web.openapi merges every area's table.
OPERATIONS: dict[tuple[str, str], Spec] = {
    ("GET", "/api/v1/checks"): read(
        "The project's uptime checks with their status",
        "checks",
        {
            "200": ok(
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
    ("POST", "/api/v1/checks"): read(
        "Define (or replace) an uptime check (admin token)",
        "checks",
        {"201": ok(ref("Check"), "Created"), "200": ok(ref("Check"), "Replaced the check of that name")},
        errors=("400", "409"),
        requestBody=request_body(ref("CheckDefinition")),
        security=ADMIN,
    ),
    ("DELETE", "/api/v1/checks/{name}"): read(
        "Delete an uptime check (admin token; its past results stay searchable)",
        "checks",
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
        [path_param("name", "the check's name", SEGMENT)],
        ("404", "409"),
        security=ADMIN,
    ),
    ("GET", "/api/v1/alerts"): read(
        "The project's alert rules with their state",
        "alerts",
        {
            "200": ok(
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
    ("POST", "/api/v1/alerts"): read(
        "Define (or replace) an alert rule",
        "alerts",
        {"201": ok(ref("AlertRule"), "Created"), "200": ok(ref("AlertRule"), "Replaced the rule of that name")},
        errors=("400", "409"),
        requestBody=request_body(ref("AlertDefinition")),
    ),
    ("GET", "/api/v1/alerts/{name}"): read(
        "One alert rule with its state", "alerts", {"200": ok(ref("AlertRule"))}, NAME, ("404",)
    ),
    ("DELETE", "/api/v1/alerts/{name}"): read(
        "Delete an API alert rule and its state (config-file rules: 409)",
        "alerts",
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
        NAME,
        ("404", "409"),
    ),
    ("POST", "/api/v1/alerts/{name}/mute"): read(
        "Mute a rule's notifications for a while (its state still changes)",
        "alerts",
        {"200": ok(ref("AlertRule"))},
        NAME,
        ("400", "404"),
        requestBody=request_body(ref("AlertMute")),
    ),
    ("POST", "/api/v1/alerts/{name}/unmute"): read(
        "End a rule's mute", "alerts", {"200": ok(ref("AlertRule"))}, NAME, ("404",)
    ),
    ("GET", "/api/v1/alerts/{name}/history"): read(
        "A rule's state changes, newest first (the last 50 of each instance)",
        "alerts",
        {
            "200": ok(
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
}

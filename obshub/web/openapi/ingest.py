"""The ingest routes of the OpenAPI document: native NDJSON, Sentry (envelope, store, their CORS
preflights) and OTLP/HTTP, with the schemas of their bodies and answers."""

from __future__ import annotations

from obshub.events import KINDS, LEVELS, STRING_FIELDS
from obshub.web.openapi.blocks import (
    COUNT,
    NONE,
    STR,
    Schema,
    Spec,
    encoding_header,
    obj,
    ok,
    path_param,
    ref,
    request_body,
    response,
)

# -- events -----------------------------------------------------------------------------------

_SCALAR: Schema = {"type": ["string", "number", "boolean", "null"]}
_ATTR_VALUE: Schema = {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]}

_EVENT: Schema = obj(
    {
        "id": STR,
        "ts": ref("Time"),
        "received_at": ref("Time"),
        "kind": {"enum": list(KINDS)},
        "level": {"enum": list(LEVELS)},
        **{f: STR for f in STRING_FIELDS},
        "error": {
            "type": "object",
            "description": "as stored: parsed (`type`, `value`, `stack` of frames, …) and scrubbed",
        },
        "group_id": STR,
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
_EVENT_IN: Schema = obj(
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

_INGEST_ANSWER = obj(
    {
        "accepted": COUNT,
        "duplicates": COUNT,
        "rejected": {"type": "array", "items": obj({"line": {"type": "integer", "minimum": 1}, "error": STR})},
    }
)

EVENT_SCHEMAS: dict[str, Schema] = {"Event": _EVENT, "EventIn": _EVENT_IN, "IngestAnswer": _INGEST_ANSWER}

# -- Sentry -----------------------------------------------------------------------------------

_SENTRY_FRAME = obj(
    {
        k: {"type": ["string", "integer", "boolean", "null"]}
        for k in ("module", "function", "filename", "abs_path", "lineno", "in_app", "context_line")
    },
    required=(),
    closed=False,
)
_SENTRY_EXCEPTION = obj(
    {
        "type": STR,
        "value": STR,
        "module": STR,
        "mechanism": {"type": "object"},
        "stacktrace": obj({"frames": {"type": "array", "items": _SENTRY_FRAME}}, required=(), closed=False),
    },
    required=(),
    closed=False,
)
_SENTRY_MESSAGE = obj({"formatted": STR, "message": STR}, required=(), closed=False)


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
            "level": STR,
            "message": {"oneOf": [STR, _SENTRY_MESSAGE]},
            "logentry": _SENTRY_MESSAGE,
            "exception": {
                "oneOf": [
                    obj({"values": {"type": "array", "items": _SENTRY_EXCEPTION}}, required=(), closed=False),
                    {"type": "array", "items": _SENTRY_EXCEPTION},
                ]
            },
            "tags": {
                "oneOf": [
                    {"type": "object", "additionalProperties": STR},
                    {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2}},
                ]
            },
            "user": obj({"id": STR, "username": STR, "email": STR}, required=(), closed=False),
            "contexts": obj(
                {"trace": obj({"trace_id": STR, "span_id": STR}, required=(), closed=False)},
                required=(),
                closed=False,
            ),
            "request": obj({"headers": {"type": ["object", "array"]}}, required=(), closed=False),
            **{k: STR for k in ("server_name", "environment", "release", "logger", "transaction", "platform")},
            "fingerprint": {"type": "array", "minItems": 1, "maxItems": 16, "items": STR},
        }.items()
    },
}

SENTRY_SCHEMAS: dict[str, Schema] = {
    "SentryEvent": _SENTRY_EVENT,
    "SentryAnswer": obj({"id": {"type": ["string", "null"]}}),
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
        encoding_header("identity (also empty or absent), gzip (x-gzip) or zstd; any other is a 415"),
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
    "requestBody": request_body(
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
        "200": ok(ref("IngestAnswer"), "The body was read: `accepted`, `duplicates` and the `rejected` lines"),
        "400": response("BadRequest"),
        "401": response("Unauthorized"),
        "403": response("Forbidden"),
        "408": response("TooSlow"),
        "413": {
            "description": "Over a limit: body as sent, decoded, or lines per request",
            "content": {"application/json": {"schema": ref("Error")}},
        },
        "415": {
            "description": "An unsupported Content-Encoding",
            "content": {"application/json": {"schema": ref("Error")}},
        },
        "429": response("TooManyRequests"),
        "503": response("Unavailable"),
    },
}

_SENTRY_KEYS: list[Spec] = [{"sentryAuth": []}, {"sentryKey": []}, {"ingestToken": []}]
_SENTRY_ANSWERS = {
    "200": ok(
        ref("SentryAnswer"),
        "Stored (or already stored): the event id, `null` for none",
        {"Access-Control-Allow-Origin": {"required": True, "schema": {"const": "*"}}},
    ),
    "400": response("SentryBadRequest"),
    "401": response("SentryUnauthorized"),
    "403": response("SentryForbidden"),
    "404": response("NoProject"),
    "408": response("SentryTooSlow"),
    "413": response("SentryTooLarge"),
    "415": response("SentryUnsupportedEncoding"),
    "429": response("SentryTooManyRequests"),
    "503": response("SentryUnavailable"),
}
_PROJECT_ID = path_param("project_id", "the project's number", {"type": "integer", "minimum": 0})
_SENTRY_ENCODING = encoding_header(
    "identity (also empty or absent), gzip (x-gzip), deflate, br or zstd; any other is a 415"
)
_ENVELOPE_EXAMPLE = (
    '{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n{"type":"event"}\n'
    '{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","level":"error","message":"boom"}\n'
)


def _preflight(what: str) -> Spec:
    return {
        "summary": f"CORS preflight of {what}",
        "tags": ["sentry"],
        "security": NONE,
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
            "404": response("NoProject"),
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
            encoding_header("identity (also empty or absent), gzip (x-gzip), deflate or zstd; any other is a 415")
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


# The specs of the ingest routes: obshub.web.openapi merges every area's table.
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
        "requestBody": request_body({"type": "string"}, "application/x-sentry-envelope", example=_ENVELOPE_EXAMPLE),
        "responses": _SENTRY_ANSWERS,
    },
    ("POST", "/api/{project_id}/store/"): {
        "summary": "One Sentry event (the legacy store endpoint)",
        "tags": ["sentry"],
        "security": _SENTRY_KEYS,
        "parameters": [_PROJECT_ID, _SENTRY_ENCODING],
        "requestBody": request_body(ref("SentryEvent")),
        "responses": _SENTRY_ANSWERS,
    },
    ("OPTIONS", "/api/{project_id}/envelope/"): _preflight("the envelope endpoint"),
    ("OPTIONS", "/api/{project_id}/store/"): _preflight("the store endpoint"),
}

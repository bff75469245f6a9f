"""The building blocks of the OpenAPI document shared by every API area: `$ref`s, objects,
answers, bodies, parameters and the security requirements of a route."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Spec = dict[str, Any]  # an operation, or any other part of the document
Schema = dict[str, Any]  # a JSON Schema 2020-12

# -- schemas ----------------------------------------------------------------------------------


def ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def obj(props: dict[str, Schema], required: tuple[str, ...] | None = None, closed: bool = True, **extra: Any) -> Schema:
    """An object; every property is required unless `required` says otherwise."""
    out: Schema = {"type": "object", "properties": props, "required": list(props if required is None else required)}
    if closed:
        out["additionalProperties"] = False
    return {**out, **extra}


def nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


STR: Schema = {"type": "string"}
COUNT: Schema = {"type": "integer", "minimum": 0}
STRINGS: Schema = {"type": "array", "items": STR}
NULLABLE_STR: Schema = {"type": ["string", "null"]}

# -- operations -------------------------------------------------------------------------------


def param(name: str) -> Spec:
    return ref(name, "parameters")


def response(name: str) -> Spec:
    return ref(name, "responses")


def ok(schema: Spec, description: str = "OK", headers: Spec | None = None) -> Spec:
    out: Spec = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def path_param(name: str, description: str, schema: Spec | None = None) -> Spec:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string", "minLength": 1},
    }


def request_body(schema: Spec, media: str = "application/json", **extra: Any) -> Spec:
    return {"required": True, "content": {media: {"schema": schema, **extra}}}


def encoding_header(description: str) -> Spec:
    # Not an enum: the name is case-insensitive and an empty header is identity.
    return {
        "name": "Content-Encoding",
        "in": "header",
        "description": f"of the body: {description}",
        "schema": {"type": "string", "examples": ["gzip", "zstd"]},
    }


READ: list[Spec] = [{"readToken": []}]
ADMIN: list[Spec] = [{"adminToken": []}]
NONE: list[Spec] = []
# A read route: 401/403 before anything else; the store's 429/503 on any read.
_READ_ERRORS = {
    "401": response("Unauthorized"),
    "403": response("Forbidden"),
    "429": response("TooManyRequests"),
    "503": response("Unavailable"),
}


def read(
    summary: str, tag: str, answers: Spec, params: Sequence[Spec] = (), errors: Iterable[str] = ("400",), **extra: Any
) -> Spec:
    """An operation that takes a read token (or, with `security=ADMIN` in `extra`, an admin token)."""
    named = {"400": "BadRequest", "404": "NotFound", "409": "Conflict"}
    responses = {**answers, **{code: response(named[code]) for code in errors}, **_READ_ERRORS}
    out: Spec = {"summary": summary, "tags": [tag], "security": READ, "responses": responses, **extra}
    if params:
        out["parameters"] = list(params)
    return out


RANGE = (param("from"), param("to"))
# Ids in paths: percent-encode `/ ? # %` (docs/api.md, Pages and caps). A group id or a check
# name holding `/` has no URL: the route matches one path segment.
SEGMENT = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}

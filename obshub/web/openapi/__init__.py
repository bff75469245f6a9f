"""`GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the hub's HTTP API, built from the
routes the app really registers.

`OPERATIONS` holds one spec per (method, path) of the API, the ingest and Sentry endpoints and
the operations routes, merged from one module per API area (ingest, query, analytics, metrics
and dashboards, checks and alerts; `blocks` holds their shared building blocks, `components`
the schemas, parameters and answers they refer to). `document()` walks the app's routes and
fails on a route without a spec or a spec without a route (tests/test_openapi.py runs it, and
checks real answers of both stores against the schemas; tests/test_fuzz_api.py fuzzes the live
API from it). The web UI's pages (HTML, session cookie) are not part of the API and not in the
document. HEAD, which Starlette adds to every GET route, is left out as docs/api.md leaves it out.

No token is needed to read the document: it describes the API and holds no data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from obshub.web.openapi import alerts, analytics, ingest, metrics, query
from obshub.web.openapi.blocks import NONE, Spec, ok, ref
from obshub.web.openapi.components import COMPONENTS

__all__ = ["OPERATIONS", "OPS_PATHS", "MissingSpec", "api_routes", "document", "routes"]

OPS_PATHS = ("/healthz", "/readyz", "/metrics")  # the operations routes outside /api/
_CONVERTER = re.compile(r"\{(\w+):\w+\}")  # `{id:path}` -> `{id}`: OpenAPI names parameters only


class MissingSpec(Exception):
    """A route without an operation spec, or a spec without a route."""


# The document itself and the operations routes.
_META: dict[tuple[str, str], Spec] = {
    ("GET", "/api/v1/openapi.json"): {
        "summary": "This document",
        "tags": ["meta"],
        "security": NONE,
        "responses": {"200": ok({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI 3.1")},
    },
    ("GET", "/healthz"): {
        "summary": "Liveness: the process serves requests",
        "tags": ["operations"],
        "security": NONE,
        "responses": {
            "200": ok(
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
        "security": NONE,
        "responses": {
            "200": ok(
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
        "security": NONE,
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
}


# In the order of the original table (the order of the `stale` list of MissingSpec).
OPERATIONS: dict[tuple[str, str], Spec] = {
    **ingest.OPERATIONS,
    **query.OPERATIONS,
    **analytics.OPERATIONS,
    **metrics.OPERATIONS,
    **alerts.OPERATIONS,
    **_META,
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
        raise MissingSpec(f"routes without a spec in obshub/web/openapi/: {missing}; specs without a route: {stale}")
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

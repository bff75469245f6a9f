"""Elasticsearch `_bulk` under `/es/`: the surface log shippers that already exist need (Fluent
Bit's es output, Vector's elasticsearch sink, Filebeat, rsyslog's omelasticsearch, the
`elasticsearch`/`opensearch-py` bulk helpers), so they ship to the hub unchanged.

    GET/HEAD /es/             version info (Filebeat checks `version.number`, Vector picks its API)
    GET /es/_cluster/health   green (Vector's health check)
    GET /es/_license          an active basic license
    PUT/POST /es/<setup>      index templates, ILM policies...: acknowledged and ignored
    POST/PUT /es/_bulk, /es/{index}/_bulk   the documents, through the one ingest path

A bulk body is NDJSON: an action line (`create` or `index`; `update` and `delete` are answered
per item with a 400, a `delete` has no source line), then the document. The answer is ES's:
`{"took", "errors", "items": [{"create": {"_index", "_id", "status": 201, "result": "created"}}]}`
with a 400 and `error: {type, reason}` for an item the hub could not store. Back-pressure and a
store outage refuse the whole request (429/503 with Retry-After, obshub/ingest/pipeline.py):
several shippers drop items that failed one by one, never a whole request they may retry.

Event ids: a document with an `_id` (Fluent Bit `Generate_ID`, Vector `id_key`, rsyslog
`bulkid`) becomes the event id sha256(index, _id)[:32], so a shipper's retry of a batch the hub
had stored is a duplicate, not a second copy; without one the id is random, as in ES (a retry
after a lost answer then stores the documents twice). An item whose `_id` was stored before is
answered `created` like a new one: the hub keeps the first copy and does not tell them apart.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from obshub.auth import shipper_token
from obshub.errors import BodyError, FieldError, ParseError
from obshub.events import NormalizedEvent, normalize
from obshub.ingest import documents, pipeline
from obshub.settings import Settings

__all__ = ["EDGE", "VERSION", "from_document", "parse_bulk", "routes"]

VERSION = "8.11.0"  # what GET /es/ claims: Filebeat 8 and Vector's `api_version: auto` take it
_PRODUCT = {"X-Elastic-Product": "Elasticsearch"}  # the elasticsearch-py 8 client checks it
_ENCODINGS = ("identity", "gzip", "deflate", "zstd")
_STORED_ACTIONS = ("create", "index")
_ACTIONS = (*_STORED_ACTIONS, "update", "delete")
# A dated index (Logstash_Format, rsyslog's `logs-%$year%.%$month%.%$day%`) names its service
# without the date: `web-2026.12.06` -> `web`.
_DATED = re.compile(r"[-_.]\d{4}[-_.]\d{2}[-_.]\d{2}$")


def from_document(doc: dict[str, Any], index: str, index_field: str) -> dict[str, Any]:
    """A bulk document -> an obshub event (client form, validated by `normalize`): the fields
    obshub/ingest/documents.py maps, the index name in `index_field` unless the document names
    it, everything else in attrs (with `_index`)."""
    out = documents.from_document(doc)
    if index_field and index_field not in out and index:
        out[index_field] = _DATED.sub("", index) or index
    out["attrs"]["_index"] = index
    return out


def _event_id(index: str, doc_id: str) -> str:
    return hashlib.sha256(f"es\0{index}\0{doc_id}".encode()).hexdigest()[:32]


@dataclass
class _Item:
    """One action of a bulk body, for its entry in the answer."""

    op: str
    index: str
    doc_id: str | None
    error: tuple[str, str] | None = None  # (ES error type, reason)


@dataclass
class _Bulk:
    """What parse found, for the answer (per request: parse and answer share it)."""

    default_index: str
    items: list[_Item] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


def _action(line: bytes, n: int, default_index: str) -> _Item:
    """The action line `n` (1-based): ParseError when it cannot be read, as ES refuses the whole
    request then (the lines after it cannot be framed)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ParseError(f"line {n}: the action line is not valid JSON") from None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise ParseError(f'line {n}: an action line must be one object with one key, e.g. {{"create":{{}}}}')
    op, meta = next(iter(obj.items()))
    if op not in _ACTIONS:
        raise ParseError(f"line {n}: unknown action {str(op)[:32]!r} (expected create, index, update or delete)")
    if not isinstance(meta, dict):
        raise ParseError(f"line {n}: the {op} action's metadata must be an object")
    index = meta.get("_index", default_index)
    doc_id = meta.get("_id")
    if not isinstance(index, str) or not index:
        raise ParseError(f"line {n}: no index: give `_index` in the action or POST to /es/<index>/_bulk")
    if doc_id is not None and (not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or doc_id == ""):
        raise ParseError(f"line {n}: `_id` must be a non-empty string")
    return _Item(op, index, None if doc_id is None else str(doc_id))


def parse_bulk(body: bytes, received_at: int, settings: Settings, bulk: _Bulk) -> pipeline.Parsed:
    """Frame the action/source pairs; map and validate each document (a problem is that item's
    400). An empty body, an unreadable action line or an action without its source line is a
    ParseError for the whole request, as in ES."""
    if not body or body.isspace():
        raise ParseError("request body is required: NDJSON action and source lines")
    lines = [line for line in body.split(b"\n") if line and not line.isspace()]
    if len(lines) > settings.max_lines:
        raise BodyError(413, f"{len(lines)} lines exceeds the limit of {settings.max_lines} per request")
    events: list[NormalizedEvent] = []
    positions: list[int] = []
    problems: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        n = len(bulk.items)  # this item's position in the answer (0-based)
        item = _action(lines[i], i + 1, bulk.default_index)
        bulk.items.append(item)
        i += 1
        if item.op == "delete":  # no source line
            item.error = ("illegal_argument_exception", "obshub keeps logs: the delete action is not supported")
            problems.append((n, item.error[1]))
            continue
        if i >= len(lines):
            raise ParseError(f"line {i}: the {item.op} action has no source line")
        source = lines[i]
        i += 1
        if item.op == "update":
            item.error = ("illegal_argument_exception", "obshub keeps logs: the update action is not supported")
            problems.append((n, item.error[1]))
            continue
        try:
            doc = orjson.loads(source)
            if not isinstance(doc, dict):
                raise FieldError("document", f"must be a JSON object, got {type(doc).__name__}")
            raw = from_document(doc, item.index, settings.es_index_field)
            if item.doc_id is not None:
                raw["id"] = _event_id(item.index, item.doc_id)
            ev = normalize(raw, received_at, settings.limits)
        except orjson.JSONDecodeError as e:
            item.error = ("document_parsing_exception", f"line {i}: invalid JSON: {e.args[0] if e.args else e}")
        except FieldError as e:
            item.error = ("document_parsing_exception", f"line {i}: {e}")
        else:
            events.append(ev)
            positions.append(n)
            if item.doc_id is None:
                item.doc_id = ev["id"]
            continue
        problems.append((n, item.error[1]))
    return pipeline.Parsed(events, positions, problems)


def _answer(done: pipeline.Ingested, bulk: _Bulk) -> Response:
    for n, why in done.refused():  # valid, but the store would not take it (a mapping conflict)
        bulk.items[n].error = ("document_parsing_exception", f"the store refused the document: {why}")
    items = []
    for seq, item in enumerate(bulk.items):
        entry: dict[str, Any] = {"_index": item.index, "_id": item.doc_id}
        if item.error is None:
            entry |= {
                "_version": 1,
                "result": "created",
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": seq,
                "_primary_term": 1,
                "status": 201,
            }
        else:
            entry |= {"status": 400, "error": {"type": item.error[0], "reason": item.error[1]}}
        items.append({item.op: entry})
    errors = any(item.error is not None for item in bulk.items)
    took = round((time.monotonic() - bulk.started) * 1000)
    return JSONResponse({"took": took, "errors": errors, "items": items}, headers=_PRODUCT)


def _credentials(request: Request) -> tuple[str | None, int | None]:
    return shipper_token(request.headers), None


def _unused_parse(body: bytes, received_at: int, settings: Settings) -> pipeline.Parsed:
    raise AssertionError("the bulk edge is made per request (`bulk`)")


def _unused_answer(done: pipeline.Ingested) -> Response:
    raise AssertionError("the bulk edge is made per request (`bulk`)")


EDGE = pipeline.Edge(
    protocol="es",
    parse=_unused_parse,
    answer=_unused_answer,
    credentials=_credentials,
    encodings=_ENCODINGS,
    headers=_PRODUCT,
)


async def bulk(request: Request) -> Response:
    state = _Bulk(request.path_params.get("index", ""))
    edge = replace(
        EDGE,
        parse=lambda body, received_at, settings: parse_bulk(body, received_at, settings, state),
        answer=lambda done: _answer(done, state),
    )
    return await pipeline.run(request, edge)


# -- the probes shippers make before they send --------------------------------------------------


async def root(request: Request) -> Response:
    return JSONResponse(
        {
            "name": "obshub",
            "cluster_name": "obshub",
            "cluster_uuid": "obshub",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "obshub",
                "lucene_version": "9.8.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        },
        headers=_PRODUCT,
    )


async def health(request: Request) -> Response:
    return JSONResponse(
        {
            "cluster_name": "obshub",
            "status": "green",
            "timed_out": False,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": 0,
            "active_shards": 0,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": 0,
        },
        headers=_PRODUCT,
    )


async def license_(request: Request) -> Response:
    return JSONResponse(
        {"license": {"status": "active", "uid": "obshub", "type": "basic", "issued_to": "obshub"}}, headers=_PRODUCT
    )


# Setup calls answered `acknowledged` and ignored: the hub has no templates, policies or streams.
_SETUP = (
    "_index_template/",
    "_template/",
    "_component_template/",
    "_ilm/policy/",
    "_data_stream/",
    "_ingest/pipeline/",
)


def _not_found(path: str) -> Response:
    reason = f"obshub answers /es/_bulk and the setup probes only, not /es/{path[:100]}"
    error = {"type": "resource_not_found_exception", "reason": reason}
    return JSONResponse({"error": {"root_cause": [error], **error}, "status": 404}, 404, headers=_PRODUCT)


async def setup(request: Request) -> Response:
    """PUT/POST of a template, policy or pipeline: acknowledged. GET/HEAD of one, or any other
    path: 404 in ES's form (Filebeat then PUTs its template, which is acknowledged)."""
    path = request.path_params["path"]
    if request.method in ("PUT", "POST") and path.startswith(_SETUP):
        return JSONResponse({"acknowledged": True}, headers=_PRODUCT)
    return _not_found(path)


# A Mount: another product's API, outside obshub's own (and its OpenAPI document).
routes: list[BaseRoute] = [
    Mount(
        "/es",
        routes=[
            Route("/", root, methods=["GET"]),
            Route("/_cluster/health", health, methods=["GET"]),
            Route("/_license", license_, methods=["GET"]),
            Route("/_bulk", bulk, methods=["POST", "PUT"]),
            Route("/{index}/_bulk", bulk, methods=["POST", "PUT"]),
            Route("/{path:path}", setup, methods=["GET", "PUT", "POST", "DELETE"]),
        ],
    ),
]

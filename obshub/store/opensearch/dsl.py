"""Query-language AST -> OpenSearch query DSL (the SQLite twin is `store/sqlite/compile.py`).

Same semantics as the SQLite backend (tests/contract runs both):
- a word matches the message (its words, split by the same rule as FTS5: mappings.py
  WORDS_ANALYSIS; as a phrase when it holds punctuation, `vshard.leader` = the words `vshard`
  `leader` in a row) or equals any id field; a phrase and `word*` match the message only;
- `-x` matches events lacking the field (`must_not` does that by itself);
- `attrs.k:v` compares typed JSON values (`attrs_kv`), `attrs.k:>N` numbers only (`attrs_num`);
- `level:>=warning` means warning, error and critical;
- a core field compared with `>`/`<` other than ts/level has no numeric index here: it matches
  nothing (SQLite casts the text; nobody stores numbers in `service`).
Everything compiles to filter context: results are sorted by time, never scored.
"""

from __future__ import annotations

import math
import re
from typing import Any

from obshub.errors import QueryError
from obshub.store.opensearch.mappings import attr_kv, num_field
from obshub.store.querylang import (
    ID_FIELDS,
    And,
    Field,
    Node,
    Not,
    Or,
    Text,
    attr_key,
    has_word,
    level_values,
    ts_value,
)

__all__ = ["compile_query", "filters"]

_RANGE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_NONE: dict[str, Any] = {"bool": {"must_not": {"match_all": {}}}}
# match_phrase_prefix expands the last token to at most this many terms (default 50 would
# silently miss matches on a busy index; each expansion costs a term lookup).
_PREFIX_EXPANSIONS = 1000


def filters(project_id: int, query: Node | None, start: int | None, end: int | None) -> dict[str, Any]:
    """The bool query every read uses: project, time range, compiled user query."""
    must: list[dict[str, Any]] = [{"term": {"project_id": project_id}}]
    rng: dict[str, int] = {}
    if start is not None:
        rng["gte"] = start
    if end is not None:
        rng["lt"] = end
    if rng:
        must.append({"range": {"ts": rng}})
    if query is not None:
        must.append(compile_query(query))
    return {"bool": {"filter": must}}


def compile_query(node: Node) -> dict[str, Any]:
    if isinstance(node, And):
        return {"bool": {"filter": [compile_query(c) for c in node.children]}}
    if isinstance(node, Or):
        return {"bool": {"should": [compile_query(c) for c in node.children], "minimum_should_match": 1}}
    if isinstance(node, Not):
        return {"bool": {"must_not": [compile_query(node.child)]}}
    if isinstance(node, Text):
        return _text(node)
    return _field(node)


def _text(node: Text) -> dict[str, Any]:
    if not has_word(node.value):
        msg: dict[str, Any] = _NONE  # punctuation only: no word can match
    elif node.prefix:
        msg = {"match_phrase_prefix": {"message": {"query": node.value, "max_expansions": _PREFIX_EXPANSIONS}}}
    else:
        msg = {"match_phrase": {"message": node.value}}
    if node.phrase or node.prefix:
        return msg
    return {"bool": {"should": [msg, *({"term": {f: node.value}} for f in ID_FIELDS)], "minimum_should_match": 1}}


def _field(node: Field) -> dict[str, Any]:
    key = attr_key(node.name)
    if key is not None:
        return _attr(key, node)
    name = node.name
    col = "message.raw" if name == "message" else name
    if node.op == "exists":
        return {"exists": {"field": name}}
    if name == "ts":
        us = ts_value(node)
        if node.op == "=":
            return {"term": {"ts": us}}
        return {"range": {"ts": {_RANGE[node.op]: us}}}
    if name == "level" and node.op != "prefix":
        chosen = level_values(node)
        if node.op == "=":
            return {"term": {"level": chosen[0]}}
        return {"terms": {"level": chosen}} if chosen else _NONE
    if node.op == "prefix":
        return {"prefix": {col: node.value}}
    if node.op == "=":
        return {"term": {col: node.value}}
    return _NONE


def _attr(key: str, node: Field) -> dict[str, Any]:
    if node.op == "exists":
        return {"term": {"attrs_keys": key}}
    if node.op == "prefix":
        # A JSON string's encoding is a prefix of the longer string's: '"ab' of '"abc"'.
        return {"prefix": {"attrs_kv": attr_kv(key, node.value)[:-1]}}
    if node.op == "=":
        v = node.value
        if node.quoted:
            return {"term": {"attrs_kv": attr_kv(key, v)}}
        kvs = [attr_kv(key, v)]
        if v in ("true", "false"):
            kvs.append(f"{key}={v}")
        should: list[dict[str, Any]] = [{"terms": {"attrs_kv": kvs}}]
        num = _number(v)
        if num is not None:
            kvs.append(f"{key}={v}")  # the number as JSON text: found even without attrs_num
            should[0] = {"terms": {"attrs_kv": kvs}}
            should.append({"term": {num_field(key): num}})
        return {"bool": {"should": should, "minimum_should_match": 1}} if len(should) > 1 else should[0]
    bound = float(node.value)
    if not math.isfinite(bound):
        raise QueryError(f"{node.name}: {node.value!r} is not a finite number")
    return {"range": {num_field(key): {_RANGE[node.op]: bound}}}


_NUM_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number(v: str) -> float | None:
    # float() also takes "nan", "inf" and "1_000": SQLite's json numbers never equal those.
    if not _NUM_RE.fullmatch(v.strip()):
        return None
    n = float(v)
    return n if math.isfinite(n) else None

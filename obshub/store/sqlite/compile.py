"""Query-language AST -> SQL for the SQLite backend (the OpenSearch twin is `opensearch/dsl.py`).

Semantics both backends share (tests/contract pins them):
- a word matches the message (FTS5 token) or equals any id field, so a pasted id is found;
- `-x` also matches events that lack the field (SQL NULLs are folded to false before NOT);
- `attrs.k:>N` compares numbers only: a string "600" is not > 500 (no silent casting);
- `level:>=warning` means warning, error and critical.

How a WHERE finds its rows (`Where.drive`; numbers: 5M events, 2 cores, docs/performance.md):
- "index": the query ANDs an equality on an indexed id field (`request_id:x`, `user_id:u`): the
  planner reads the partial index (project_id, key, ts), already in time order, and tests the
  rest row by row.
- "rowids": the query is (or ANDs) a set small by construction -- an OR of id equalities (a
  trace: request_id OR trace_id; a timeline's chunk of request ids), or a word the full-text
  index holds few times (`rare`): `e.rowid IN (<index searches>)` collects the rowids first.
  SQLite does not combine two indexes for an OR: `(request_id = ? OR trace_id = ?) ORDER BY ts`
  walked every event of the project by time (2.2 s); the UNION ALL of index searches is 0.3 ms.
  `+e.project_id`, `+e.ts` keep the planner from walking ix_events_ts instead, which it did
  even for a 6-row rowid list (65 ms at 1M) to save the sort.
- "time": anything else walks (project_id, ts) newest first and tests each row. A word's
  full-text hits are then one materialized set (`+e.rowid IN (SELECT rowid FROM events_fts
  ...)`, never a driver); `span` bounds it to a rowid range: the store walks windows of the
  newest rows and bounds the set to their rowids, so a word in 1.5M events does not collect
  1.5M rowids for a page of 100 (303 ms -> 1.5 ms). A per-row probe of the full-text index
  (`EXISTS (... MATCH ? AND rowid = e.rowid)`) was measured too: 16-100 us a row, too slow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from obshub.events import CORRELATION_KEYS
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

__all__ = ["INDEXED_KEYS", "LOOKUP_KEYS", "Rare", "Where", "compile_predicate", "compile_where", "match_string"]

_SQL_OPS = {"=": "=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_MAX_CHAR = "\U0010ffff"
# Fields with an index (project_id, key, ...): the partial indexes (project_id, key, ts) of
# schema.py, and the UNIQUE (project_id, id) constraint's.
INDEXED_KEYS = (*CORRELATION_KEYS, "group_id")
LOOKUP_KEYS = frozenset(("id", *INDEXED_KEYS))

Rare = Callable[[str], bool]  # an FTS5 MATCH string -> few enough hits to start from them?
Span = tuple[int, int]  # an inclusive rowid range


@dataclass
class Where:
    """A WHERE clause over `events e`, and how it finds its rows."""

    sql: str
    params: list[Any]
    drive: Literal["index", "rowids", "time"]  # module docstring
    fts: bool = False  # tests a materialized full-text set that `span` could bound
    # (SELECT min(rowid), max(rowid) ..., params): the rowids the driver can yield, for `span`
    driver_span: tuple[str, list[Any]] | None = None


def match_string(node: Text) -> str | None:
    """The FTS5 MATCH string of a word, phrase or prefix; None when it holds no word character
    (no token can match it). Quoted: its tokens form a phrase, and no user text is FTS syntax."""
    if not has_word(node.value):
        return None
    # FTS5 ends a string at NUL ("unterminated string", once a 503); NUL separates words anyway.
    s = '"' + node.value.replace('"', '""').replace("\x00", " ") + '"'
    return s + " *" if node.prefix else s


@dataclass
class _Ctx:
    project_id: int
    start: int | None
    end: int | None
    rare: Rare
    span: Span | None
    fts: bool = False  # set when a materialized full-text set was compiled


@dataclass
class _Set:
    """A set of rowids as SELECTs to UNION ALL; `exact`: it is the node's match set (within the
    project), so the node needs no per-row test besides membership."""

    parts: list[tuple[str, list[Any]]] = field(default_factory=list)
    exact: bool = True

    def sql(self) -> tuple[str, list[Any]]:
        params: list[Any] = []
        for _, p in self.parts:
            params.extend(p)
        return " UNION ALL ".join(s for s, _ in self.parts), params


def _lookup(ctx: _Ctx, key: str, values: list[str]) -> tuple[str, list[Any]]:
    """An index search: rowids of the project's events whose `key` is one of `values`. (An IN
    list implies `key IS NOT NULL`, so the partial index serves it.)"""
    sql = f"SELECT rowid FROM events WHERE project_id = ? AND {key} "
    sql += "= ?" if len(values) == 1 else f"IN ({','.join('?' * len(values))})"
    params: list[Any] = [ctx.project_id, *values]
    if ctx.start is not None:
        sql += " AND ts >= ?"
        params.append(ctx.start)
    if ctx.end is not None:
        sql += " AND ts < ?"
        params.append(ctx.end)
    return sql, params


def _fts(ctx: _Ctx, match: str) -> tuple[str, list[Any]]:
    if ctx.span is None:
        return "SELECT rowid FROM events_fts WHERE events_fts MATCH ?", [match]
    return "SELECT rowid FROM events_fts WHERE events_fts MATCH ? AND rowid BETWEEN ? AND ?", [match, *ctx.span]


def _text_set(ctx: _Ctx, node: Text) -> _Set:
    """Every rowid a word can match: its full-text hits and, for a bare word, the events one of
    whose id fields equals it."""
    out = _Set()
    match = match_string(node)
    if match is not None:
        out.parts.append(_fts(ctx, match))
    if not (node.phrase or node.prefix):
        out.parts.extend(_lookup(ctx, f, [node.value]) for f in ID_FIELDS)
    if not out.parts:  # a punctuation-only phrase: nothing
        out.parts.append(("SELECT NULL WHERE 0", []))
    return out


def _is_lookup(node: Node) -> bool:
    return isinstance(node, Field) and node.op == "=" and node.name in LOOKUP_KEYS


def _candidates(node: Node, ctx: _Ctx) -> _Set | None:
    """A small set of rowids holding every match of `node`, as index searches; None when the
    node can match too many rows to collect them first."""
    if isinstance(node, Field):
        return _Set([_lookup(ctx, node.name, [node.value])]) if _is_lookup(node) else None
    if isinstance(node, Text):
        match = match_string(node)
        if match is not None and not ctx.rare(match):
            return None
        return _text_set(ctx, node)
    if isinstance(node, Or):
        keys: dict[str, list[str]] = {}  # equalities on one key become one IN search
        out = _Set()
        for c in node.children:
            if _is_lookup(c):
                assert isinstance(c, Field)
                keys.setdefault(c.name, []).append(c.value)
                continue
            sub = _candidates(c, ctx)
            if sub is None:
                return None
            out.parts.extend(sub.parts)
            out.exact = out.exact and sub.exact
        out.parts[:0] = [_lookup(ctx, k, vs) for k, vs in keys.items()]
        return out
    if isinstance(node, And):
        best = _best(node.children, ctx)
        return None if best is None else _Set(best[1].parts, exact=False)  # the other children still test
    return None  # NOT: its complement is never small


def _best(children: tuple[Node, ...], ctx: _Ctx) -> tuple[int, _Set] | None:
    """The AND child to collect rowids from: id lookups first (exact, no count needed), then
    ORs, then a rare word."""
    order = sorted(range(len(children)), key=lambda i: (not _is_lookup(children[i]), not isinstance(children[i], Or)))
    for i in order:
        found = _candidates(children[i], ctx)
        if found is not None:
            return i, found
    return None


def compile_where(
    project_id: int, node: Node | None, start: int | None, end: int | None, rare: Rare, span: Span | None = None
) -> Where:
    """The WHERE of a read over `events e`: project, time range [start, end), query. `rare`
    decides which words start from the full-text index; `span` bounds the full-text sets tested
    row by row (rows outside it must not be able to match: see `Where.driver_span`)."""
    ctx = _Ctx(project_id, start, end, rare, span)
    children: tuple[Node, ...] = () if node is None else node.children if isinstance(node, And) else (node,)
    drive: Literal["index", "rowids", "time"] = "time"
    driver_span: tuple[str, list[Any]] | None = None
    picked: tuple[int, _Set] | None = None
    lookup = next((c for c in children if _is_lookup(c)), None)
    if lookup is not None:
        assert isinstance(lookup, Field)
        drive = "index"
        lk, lp = _lookup(ctx, lookup.name, [lookup.value])
        driver_span = (lk.replace("SELECT rowid", "SELECT min(rowid), max(rowid)", 1), lp)
    elif children:
        picked = _best(children, ctx)
        if picked is not None:
            drive = "rowids"
    plus = "+" if drive == "rowids" else ""  # see the module docstring
    clauses, params = [f"{plus}e.project_id = ?"], [project_id]
    if start is not None:
        clauses.append(f"{plus}e.ts >= ?")
        params.append(start)
    if end is not None:
        clauses.append(f"{plus}e.ts < ?")
        params.append(end)
    if picked is not None:
        sql, p = picked[1].sql()
        clauses.append(f"e.rowid IN ({sql})")
        params.extend(p)
        driver_span = (f"SELECT min(rowid), max(rowid) FROM ({sql})", p)
        if picked[1].exact:  # membership is the whole test of that child
            children = children[: picked[0]] + children[picked[0] + 1 :]
    for c in children:
        clauses.append(_compile(c, "e", params, ctx))
    return Where(" AND ".join(clauses), params, drive, ctx.fts, driver_span)


def compile_predicate(project_id: int, node: Node | None, span: Span | None) -> tuple[str, list[Any]]:
    """A query as one boolean expression over `events e`, for a per-row test inside an
    aggregate (`count(*) FILTER (WHERE ...)`, `Store.aggregates`): words test membership of
    their full-text set, materialized once per statement and bounded to `span` (the window's
    rowids), never a driver."""
    if node is None:
        return "1", []
    params: list[Any] = []
    ctx = _Ctx(project_id, None, None, lambda _m: False, span)
    return _compile(node, "e", params, ctx), params


def _compile(node: Node, a: str, p: list[Any], ctx: _Ctx) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_compile(c, a, p, ctx) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_compile(c, a, p, ctx) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"NOT IFNULL({_compile(node.child, a, p, ctx)}, 0)"
    if isinstance(node, Text):
        match = match_string(node)
        if match is not None and not ctx.rare(match):
            ctx.fts = True
        sql, params = _text_set(ctx, node).sql()
        p.extend(params)
        # `+`: a membership test, never the driver (a common word's set is not small)
        return f"+{a}.rowid IN ({sql})"
    return _field(node, a, p)


def _field(node: Field, a: str, p: list[Any]) -> str:
    key = attr_key(node.name)
    if key is not None:
        return _attr(key, node, a, p)
    col = f"{a}.{node.name}"
    if node.op == "exists":
        return f"{col} IS NOT NULL"
    if node.name == "ts":
        p.append(ts_value(node))
        return f"{col} {_SQL_OPS[node.op]} ?"
    if node.name == "level" and node.op != "prefix":
        chosen = level_values(node)
        if node.op == "=":
            p.append(chosen[0])
            return f"{col} = ?"
        if not chosen:
            return "0"
        p.extend(chosen)
        return f"{col} IN ({','.join('?' * len(chosen))})"
    if node.op == "prefix":
        p.extend((node.value, node.value + _MAX_CHAR))
        return f"({col} >= ? AND {col} < ?)"
    if node.op == "=":
        p.append(node.value)
        return f"{col} = ?"
    p.append(float(node.value))  # parser guaranteed a number
    return f"CAST({col} AS REAL) {_SQL_OPS[node.op]} ?"


def _attr(key: str, node: Field, a: str, p: list[Any]) -> str:
    path = f'$."{key}"'  # the parser only admits [A-Za-z0-9_.@-] in names: safe to inline
    ext = f"json_extract({a}.attrs, '{path}')"
    typ = f"json_type({a}.attrs, '{path}')"
    if node.op == "exists":
        return f"{typ} IS NOT NULL"
    if node.op == "prefix":
        p.extend((node.value, node.value + _MAX_CHAR))
        return f"({typ} = 'text' AND {ext} >= ? AND {ext} < ?)"
    if node.op == "=":
        v = node.value
        if v in ("true", "false") and not node.quoted:
            p.append(v)
            return f"({typ} = ? OR {ext} = '{v}')"
        num = _number(v) if not node.quoted else None
        if num is not None:
            p.extend((v, num))
            return f"({ext} = ? OR ({typ} IN ('integer','real') AND {ext} = ?))"
        p.append(v)
        return f"{ext} = ?"
    p.append(float(node.value))
    return f"({typ} IN ('integer','real') AND {ext} {_SQL_OPS[node.op]} ?)"


def _number(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None

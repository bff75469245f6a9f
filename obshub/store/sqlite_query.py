"""Query-language AST -> SQL for the SQLite backend (the OpenSearch twin is `opensearch/dsl.py`).

Semantics both backends share (tests/contract pins them):
- a word matches the message (FTS5 token) or equals any id field, so a pasted id is found;
- `-x` also matches events that lack the field (SQL NULLs are folded to false before NOT);
- `attrs.k:>N` compares numbers only: a string "600" is not > 500 (no silent casting);
- `level:>=warning` means warning, error and critical.
"""

from __future__ import annotations

from typing import Any

from obshub.store.querylang import ID_FIELDS, And, Field, Node, Not, Or, Text, attr_key, level_values, ts_value

__all__ = ["compile_where"]

_SQL_OPS = {"=": "=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_MAX_CHAR = "\U0010ffff"


def compile_where(node: Node, alias: str = "e") -> tuple[str, list[Any]]:
    """Return a SQL boolean expression over table alias `alias` and its parameters."""
    params: list[Any] = []
    sql = _compile(node, alias, params)
    return sql, params


def _fts_string(word: str, prefix: bool) -> str:
    # Quoted FTS5 string: its tokens form a phrase, and no user text is FTS syntax.
    s = '"' + word.replace('"', '""') + '"'
    return s + " *" if prefix else s


def _compile(node: Node, a: str, p: list[Any]) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_compile(c, a, p) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_compile(c, a, p) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"NOT IFNULL({_compile(node.child, a, p)}, 0)"
    if isinstance(node, Text):
        if not any(ch.isalnum() for ch in node.value):
            fts = "0"  # punctuation only: no FTS token can match
        else:
            p.append(_fts_string(node.value, node.prefix))
            fts = f"{a}.rowid IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)"
        if node.phrase or node.prefix:
            return fts
        ors = [fts]
        for f in ID_FIELDS:
            ors.append(f"{a}.{f} = ?")
            p.append(node.value)
        return "(" + " OR ".join(ors) + ")"
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

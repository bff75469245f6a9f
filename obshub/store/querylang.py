"""The one query syntax of obshub (search bar, API `q=`, CLI), parsed once into an AST.

    level:error service:api "timed out" user_id:42 -host:web-3 duration_ms:>500 attrs.plan:pro
    (host:web-1 OR host:web-2) NOT kind:check  path:/api/*  trace_id:*

Grammar (AND binds tighter than OR; juxtaposition means AND):

    query   := or EOF
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*
    unary   := ("-" | "NOT") unary | primary
    primary := "(" or ")" | NAME ":" [op] value | word | "phrase"
    op      := ">" | ">=" | "<" | "<="      value := "quoted" | bare   (bare ending in * = prefix,
                                                                        bare `*` alone = exists)

Field names are the top-level event fields; any other name is an attribute (`duration_ms` and
`attrs.duration_ms` are the same field). Backends compile the AST (`sqlite/`, `opensearch/`);
the parser never sees a database. Errors carry a 1-based column so the UI can point at it.

A query is bounded here, once for both stores, so no query text reaches a limit of theirs (a
store refusing a query would look like an outage): at most MAX_TERMS terms and MAX_DEPTH levels
of parentheses and NOT. Unbounded, 1,500 NOTs overflowed Python's stack (a 500) and a 1,000-term
OR went past SQLite's expression depth (a 503 "store unavailable" that also marked the store
down). Measured on SQLite 3.40: 72 words in an OR pass its compound-SELECT limit (500; 64 words
are 448 index searches), and its parser's stack (100 entries) overflows at 14 parentheses
alternating AND and OR (`a (b OR c (d OR ...`) or 20 NOTs; aggregations wrap the query in a
subquery or two, hence 10. OpenSearch takes 64 words as 448 clauses (its default limit: 1,024).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from obshub.errors import FieldError, QueryError
from obshub.events import CORRELATION_KEYS, LEVELS, STRING_FIELDS, normalize_level, parse_ts

__all__ = [
    "MAX_DEPTH",
    "MAX_TERMS",
    "And",
    "Field",
    "Node",
    "Not",
    "Or",
    "QuerySyntaxError",
    "Text",
    "attr_key",
    "has_word",
    "level_values",
    "parse",
    "to_string",
    "ts_value",
]

# Fields stored as their own column/keyword. Everything else is an attribute.
CORE_FIELDS = frozenset((*STRING_FIELDS, "id", "kind", "level", "ts", "group_id"))
# A bare word also matches these exactly, so pasting an id into the search bar finds it.
ID_FIELDS = ("id", *CORRELATION_KEYS)
OPS = ("=", ">", ">=", "<", "<=", "prefix", "exists")
MAX_TERMS = 64  # words, phrases and field terms in one query (module docstring)
MAX_DEPTH = 10  # nested parentheses and NOT/- in one query (module docstring)


class QuerySyntaxError(ValueError):
    """The query cannot be parsed; `column` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.message = message
        self.column = column


@dataclass(frozen=True)
class Text:
    """Free text: a word (or `word*` prefix) or a quoted phrase, matched against the message."""

    value: str
    phrase: bool = False
    prefix: bool = False


@dataclass(frozen=True)
class Field:
    name: str  # a core field name, or "attrs.KEY"
    op: str  # one of OPS
    value: str = ""
    quoted: bool = False


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Text | Field | Not | And | Or


def attr_key(name: str) -> str | None:
    """`attrs.plan` -> `plan`; a core field -> None."""
    return name[6:] if name.startswith("attrs.") else None


def has_word(text: str) -> bool:
    """Does `text` hold a word character? Messages are searched as words -- runs of letters,
    digits (any script) and `_`, split at every other character (docs/api.md, "Words") -- so
    `--` or `:` can match no message."""
    return any(ch.isalnum() or ch == "_" for ch in text)


def ts_value(node: Field) -> int:
    """The µs instant of a `ts:` comparison (RFC 3339 or epoch), as every backend reads it."""
    if node.op == "prefix":
        raise QueryError("ts does not support prefix matching; use ts:>=TIME")
    try:
        return parse_ts(node.value)
    except FieldError as e:  # its message names the field already: "ts: cannot parse ..."
        raise QueryError(str(e)) from None
    except ValueError:  # int() of 4,300+ digits
        raise QueryError(f"ts: cannot parse {node.value[:40]!r} as RFC 3339 or an epoch number") from None


def level_values(node: Field) -> list[str]:
    """The levels a `level:` term matches: `level:warn` -> [warning]; `level:>=warning` ->
    [warning, error, critical] (levels are ordered). Empty when nothing can match."""
    try:
        lv = normalize_level(node.value)
    except FieldError as e:
        raise QueryError(str(e)) from None
    if node.op == "=":
        return [lv]
    rank = LEVELS.index(lv)
    cmp = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[node.op]
    return [x for i, x in enumerate(LEVELS) if cmp(i, rank)]


def _field_name(raw: str) -> str:
    if raw in CORE_FIELDS or raw.startswith("attrs."):
        return raw
    return "attrs." + raw


# ---------------------------------------------------------------------------- lexer

_SPECIAL = set('()"')


@dataclass(frozen=True)
class _Tok:
    kind: str  # "(" ")" "word" "phrase" "field" "not" "and" "or" "minus"
    text: str
    col: int
    field: str = ""
    op: str = ""
    quoted: bool = False


def _is_name(s: str) -> bool:
    return bool(s) and (s[0].isalpha() or s[0] in "_@") and all(c.isalnum() or c in "_.@-" for c in s)


def _read_quoted(q: str, i: int) -> tuple[str, int]:
    """q[i] is '"'. Returns (text, index after closing quote). Backslash escapes \" and \\."""
    start = i
    i += 1
    buf = []
    while i < len(q):
        c = q[i]
        if c == "\\" and i + 1 < len(q) and q[i + 1] in '"\\':
            buf.append(q[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(buf), i + 1
        buf.append(c)
        i += 1
    raise QuerySyntaxError("unterminated quote", start + 1)


def _lex(q: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(q)
    while i < n:
        c = q[i]
        if c.isspace():
            i += 1
            continue
        col = i + 1
        if c in "()":
            toks.append(_Tok(c, c, col))
            i += 1
            continue
        if c == '"':
            text, i = _read_quoted(q, i)
            toks.append(_Tok("phrase", text, col))
            continue
        if c == "-" and i + 1 < n and not q[i + 1].isspace() and q[i + 1] != "-":
            toks.append(_Tok("minus", "-", col))
            i += 1
            continue
        j = i
        while j < n and not q[j].isspace() and q[j] not in _SPECIAL:
            j += 1
        word = q[i:j]
        colon = word.find(":")
        if colon > 0 and _is_name(word[:colon]):
            name, rest = word[:colon], word[colon + 1 :]
            op = "="
            for sym in (">=", "<=", ">", "<"):
                if rest.startswith(sym):
                    op, rest = sym, rest[len(sym) :]
                    break
            if rest == "" and j < n and q[j] == '"':
                text, j = _read_quoted(q, j)
                toks.append(_Tok("field", text, col, field=name, op=op, quoted=True))
            elif rest == "":
                raise QuerySyntaxError(f"missing value after '{word}'", j + 1)
            else:
                toks.append(_Tok("field", rest, col, field=name, op=op))
            i = j
            continue
        if word in ("AND", "OR", "NOT"):
            toks.append(_Tok(word.lower(), word, col))
        else:
            toks.append(_Tok("word", word, col))
        i = j
    return toks


# ---------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, q: str) -> None:
        self.q = q
        self.toks = _lex(q)
        self.pos = 0
        self.depth = 0  # parentheses and NOTs open at this point
        self.terms = 0

    def _enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QuerySyntaxError(f"query nests deeper than {MAX_DEPTH} levels of parentheses and NOT", tok.col)

    def _term(self, tok: _Tok) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QuerySyntaxError(f"query has more than {MAX_TERMS} terms", tok.col)

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def end_col(self) -> int:
        return len(self.q) + 1

    def parse(self) -> Node | None:
        if not self.toks:
            return None
        node = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise QuerySyntaxError(f"unexpected '{tok.text}'", tok.col)
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.pos += 1
            if self._at_end_or(")", "or", "and"):
                raise QuerySyntaxError("expected a term after OR", self._col())
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(_flat(parts, Or))

    def parse_and(self) -> Node:
        parts = [self.parse_unary()]
        while (tok := self.peek()) is not None and tok.kind not in (")", "or"):
            if tok.kind == "and":
                self.pos += 1
                if self._at_end_or(")", "or", "and"):
                    raise QuerySyntaxError("expected a term after AND", self._col())
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else And(_flat(parts, And))

    def _at_end_or(self, *kinds: str) -> bool:
        tok = self.peek()
        return tok is None or tok.kind in kinds

    def _col(self) -> int:
        tok = self.peek()
        return tok.col if tok is not None else self.end_col()

    def parse_unary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise QuerySyntaxError("unexpected end of query", self.end_col())
        if tok.kind in ("minus", "not"):
            self.pos += 1
            if self.peek() is None:
                raise QuerySyntaxError(f"expected a term after '{tok.text}'", self.end_col())
            self._enter(tok)
            node = Not(self.parse_unary())
            self.depth -= 1
            return node
        return self.parse_primary()

    def parse_primary(self) -> Node:
        tok = self.peek()
        assert tok is not None
        if tok.kind == "(":
            self.pos += 1
            inner = self.peek()
            if inner is None:
                raise QuerySyntaxError("unclosed '('", tok.col)
            if inner.kind == ")":
                raise QuerySyntaxError("empty parentheses", tok.col)
            self._enter(tok)
            node = self.parse_or()
            close = self.peek()
            if close is None or close.kind != ")":
                raise QuerySyntaxError("unclosed '('", tok.col)
            self.pos += 1
            self.depth -= 1
            return node
        if tok.kind in (")", "and", "or"):
            raise QuerySyntaxError(f"unexpected '{tok.text}'", tok.col)
        self._term(tok)
        self.pos += 1
        if tok.kind == "phrase":
            if not tok.text.strip():
                raise QuerySyntaxError("empty phrase", tok.col)
            return Text(tok.text, phrase=True)
        if tok.kind == "word":
            if tok.text.endswith("*") and len(tok.text) > 1:
                return Text(tok.text[:-1], prefix=True)
            if tok.text == "*":
                raise QuerySyntaxError("'*' alone matches nothing; leave the query empty for all events", tok.col)
            return Text(tok.text)
        # field
        name = _field_name(tok.field)
        if name == "attrs.":
            raise QuerySyntaxError("missing attribute name after 'attrs.'", tok.col)
        if tok.op == "=" and not tok.quoted:
            if tok.text == "*":
                return Field(name, "exists")
            if tok.text.endswith("*"):
                return Field(name, "prefix", tok.text[:-1])
        if tok.op != "=":
            _check_number(tok)
        return Field(name, tok.op, tok.text, tok.quoted)


def _flat(parts: list[Node], cls: type[And] | type[Or]) -> tuple[Node, ...]:
    """`a (b c)` is `a b c`: merge same-operator groups so the AST (and its text) is canonical."""
    out: list[Node] = []
    for p in parts:
        out.extend(p.children if isinstance(p, cls) else (p,))
    return tuple(out)


def _check_number(tok: _Tok) -> None:
    if tok.field in ("ts", "level"):
        return  # RFC 3339 times and level names: checked by the backend's normalizers
    try:
        float(tok.text)
    except ValueError:
        raise QuerySyntaxError(f"'{tok.field}:{tok.op}' needs a number, got '{tok.text}'", tok.col) from None


def parse(q: str) -> Node | None:
    """Parse a query; None means "everything". Raises QuerySyntaxError."""
    return _Parser(q).parse()


# ---------------------------------------------------------------------------- printer


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bare_value_ok(s: str, op: str) -> bool:
    """Can a field value be printed unquoted and lex back to the same value?"""
    return (
        bool(s)
        and not any(c.isspace() or c in '()"' for c in s)
        and not s.endswith("*")
        and not (op == "" and s[:1] in "<>")
    )


def to_string(node: Node | None) -> str:
    """Canonical text of an AST; parse(to_string(n)) == n."""
    if node is None:
        return ""
    if isinstance(node, Text):
        # Words come from bare tokens, so they print back bare; phrases keep their quotes.
        if node.phrase:
            return _quote(node.value)
        return node.value + "*" if node.prefix else node.value
    if isinstance(node, Field):
        if node.op == "exists":
            return f"{node.name}:*"
        if node.op == "prefix":
            return f"{node.name}:{node.value}*"
        op = "" if node.op == "=" else node.op
        if node.quoted or not _bare_value_ok(node.value, op):
            return f"{node.name}:{op}{_quote(node.value)}"
        return f"{node.name}:{op}{node.value}"
    if isinstance(node, Not):
        inner = to_string(node.child)
        if isinstance(node.child, (And, Or)):
            return f"-({inner})"
        return f"NOT {inner}" if inner.startswith("-") else f"-{inner}"
    if isinstance(node, And):
        return " ".join(f"({to_string(c)})" if isinstance(c, Or) else to_string(c) for c in node.children)
    return " OR ".join(f"({to_string(c)})" if isinstance(c, And) else to_string(c) for c in node.children)

"""Every match of a query as CSV or NDJSON, in constant memory and without a row cap.

One implementation behind `GET /api/v1/export` (read token), the web UI's `/search.csv` and
`obshub export`. Rows are read `PAGE` at a time through the store's (ts, id) cursor, oldest
first, and each page is encoded and handed on before the next one is read: a 300,000-row export
holds one page (~1 MB), never the result. The range is fixed when the export starts (`to`
defaults to that moment), so an export of a live stream ends, and the next one can start at
this one's `to` without a gap or an overlap (`from` is inclusive, `to` exclusive).

CSV columns (docs/api.md, "Export"):
  1. the core fields in the fixed order of `CORE_COLUMNS` (`error_type`/`error_value` from the
     error object; its stack is only in NDJSON);
  2. `attrs.<key>` for every attribute key of the *first page* (up to 1,000 rows), sorted;
  3. `attrs`: a JSON object of the row's attributes that have no column of their own, "" when
     none. A stream cannot know the keys of rows it has not read yet; a key that first shows up
     later is never dropped, it lands here.
`columns=` replaces that rule with exact columns, in the given order (a fixed schema for
scripts). Attribute cells: strings as they are, other values as JSON (`900`, `true`, `["a"]`).
NDJSON lines are the events exactly as the search API returns them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from obshub.errors import QueryError
from obshub.events import now_us, to_public
from obshub.query.search import MAX_LIMIT
from obshub.store.base import SearchRequest, Store
from obshub.store.querylang import Node

__all__ = ["CORE_COLUMNS", "FORMATS", "Chunk", "ExportRequest", "chunks", "export_request"]

FORMATS = ("csv", "ndjson")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
PAGE = MAX_LIMIT  # rows per store query: 300 queries for 300k rows, ~1 MB held at a time
CORE_COLUMNS = (
    "ts",
    "level",
    "kind",
    "host",
    "service",
    "env",
    "release",
    "logger",
    "name",
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
    "session_id",
    "message",
    "error_type",
    "error_value",
    "group_id",
    "id",
    "received_at",
)
REST = "attrs"  # the column holding the attributes without a column of their own
MAX_COLUMNS = 500  # a `columns=` list longer than any event could fill is a mistake

_FORMULA_START = frozenset("=+-@\t\r")
Chunk = tuple[bytes, int]  # encoded rows and how many rows they are


@dataclass(frozen=True)
class ExportRequest:
    query: Node | None
    start: int | None  # inclusive, µs
    end: int  # exclusive, µs: fixed when the export starts
    format: str = "csv"
    columns: tuple[str, ...] | None = None  # CSV only: exact columns instead of the default rule
    spreadsheet: bool = False  # CSV only: neutralise cells a spreadsheet would run as a formula


def export_request(
    query: Node | None,
    start: int | None,
    end: int | None,
    fmt: str | None = None,
    columns: str | None = None,
    spreadsheet: str | None = None,
    now: int | None = None,
) -> ExportRequest:
    """Validate the export's parameters (QueryError naming the parameter); `end` defaults to now."""
    fmt = fmt or "csv"
    if fmt not in FORMATS:
        raise QueryError(f"format: expected csv or ndjson, got {fmt!r}")
    if spreadsheet not in (None, "", "0", "1"):
        raise QueryError("spreadsheet: expected 0 or 1")
    cols = _columns(columns) if columns else None
    if fmt != "csv" and (cols is not None or spreadsheet == "1"):
        raise QueryError(f"{'columns' if cols is not None else 'spreadsheet'}: only applies to format=csv")
    if end is None:
        end = now_us() if now is None else now
        if start is not None and end <= start:
            raise QueryError("from: must be before now when `to` is not given")
    return ExportRequest(query, start, end, fmt, cols, spreadsheet == "1")


def _columns(raw: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in raw.split(","))
    if any(not c for c in names):
        raise QueryError("columns: empty column name (expected names separated by commas, e.g. ts,host,message)")
    if len(names) > MAX_COLUMNS:
        raise QueryError(f"columns: {len(names)} columns exceeds the limit of {MAX_COLUMNS}")
    # What a column shows: `host` (the core field) and `attrs.host` (an attribute) are two
    # columns; `duration_ms` and `attrs.duration_ms` are one.
    seen: set[tuple[bool, str]] = set()
    for c in names:
        key = _attr(c)
        if key == "":
            raise QueryError(f"columns: {c!r} has no attribute key after 'attrs.'")
        shows = (True, key) if key is not None else (False, c)
        if shows in seen:
            raise QueryError(f"columns: {c!r} is listed twice")
        seen.add(shows)
    return names


def _attr(column: str) -> str | None:
    """The attribute key a column shows, None for a core column or the `attrs` rest column. As in
    the query language, any name that is not a core field is an attribute (`duration_ms` =
    `attrs.duration_ms`)."""
    if column.startswith("attrs."):
        return column[6:]
    return None if column in CORE_COLUMNS or column == REST else column


def chunks(store: Store, project_id: int, req: ExportRequest) -> Generator[Chunk, None, None]:
    """The export, one page per chunk, oldest first. The first chunk comes from the first store
    query (CSV: the header with it), so a store that is down fails before anything is sent."""
    encode: _Csv | None = None
    after: tuple[int, str] | None = None
    while True:
        page = store.search(project_id, SearchRequest(req.query, req.start, req.end, PAGE, after, True))
        if req.format == "ndjson":
            yield b"".join(orjson.dumps(to_public(e)) + b"\n" for e in page), len(page)
        else:
            if encode is None:
                encode = _Csv(req.columns or _default_columns(page), req.spreadsheet)
                yield encode.header() + encode.rows(page), len(page)
            else:
                yield encode.rows(page), len(page)
        if len(page) < PAGE:
            return
        after = (page[-1]["ts"], page[-1]["id"])


def _default_columns(first_page: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    keys = sorted({k for e in first_page for k in e["attrs"]})
    return (*CORE_COLUMNS, *(f"attrs.{k}" for k in keys), REST)


class _Csv:
    """Encodes pages of stored events under one fixed list of columns."""

    def __init__(self, columns: Sequence[str], spreadsheet: bool) -> None:
        self.columns = tuple(columns)
        self.attrs = {c: _attr(c) for c in self.columns}
        self.own = {a for a in self.attrs.values() if a is not None}  # attrs with a column of their own
        self.spreadsheet = spreadsheet
        self.buf = io.StringIO()
        self.writer = csv.writer(self.buf)

    def header(self) -> bytes:
        self.writer.writerow(self.columns)
        return self._take()

    def rows(self, page: Sequence[dict[str, Any]]) -> bytes:
        for e in page:
            row = self._row(e)
            if self.spreadsheet:
                # A leading = + - @ (or a TAB or CR before one, which spreadsheets skip) makes them
                # evaluate a cell: prefix a quote (OWASP CSV injection).
                row = [("'" + c) if c[:1] in _FORMULA_START and c != "-" else c for c in row]
            self.writer.writerow(row)
        return self._take()

    def _take(self) -> bytes:
        out = self.buf.getvalue().encode()
        self.buf.seek(0)
        self.buf.truncate()
        return out

    def _row(self, e: dict[str, Any]) -> list[str]:
        pub = to_public(e)
        err = e.get("error") or {}
        attrs: dict[str, Any] = e["attrs"]
        row = []
        for col in self.columns:
            key = self.attrs[col]
            if key is not None:
                row.append(_cell(attrs.get(key)))
            elif col == REST:
                rest = {k: v for k, v in attrs.items() if k not in self.own}
                row.append(orjson.dumps(rest).decode() if rest else "")
            elif col == "error_type":
                row.append(_cell(err.get("type")))
            elif col == "error_value":
                row.append(_cell(err.get("value")))
            else:
                row.append(_cell(pub.get(col)))
        return row


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return orjson.dumps(v).decode()

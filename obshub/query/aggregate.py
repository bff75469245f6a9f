"""`GET/POST /api/v1/aggregate`: a measure over the events a query matches in a time range,
split by up to two fields and into time buckets (docs/aggregate.md). This module checks the
arguments (a 400 naming the parameter, never a 500), bounds the cost and shapes the JSON or CSV;
the stores compute (`Store.aggregate`).

Bounds, so no request costs more than a screenful of chart: a range (default the last 24 h),
at most MAX_BUCKETS time buckets (1,440 minutes of a day fit) and at most MAX_CELLS cells
(buckets x groups: a day per minute for 10 groups and their `other` is 15,851; OpenSearch
refuses more than 65,535 buckets in one search), `top` <= MAX_TOP groups per level.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from typing import Any

from obshub.errors import QueryError
from obshub.events import format_ts, now_us
from obshub.query.search import parse_query
from obshub.query.times import parse_interval, parse_time
from obshub.store.aggregate import attr_name
from obshub.store.base import AGG_OPS, AggBucket, AggregateRequest, Store
from obshub.store.querylang import CORE_FIELDS

__all__ = [
    "AUTO_STEPS",
    "DEFAULT_FROM",
    "MAX_BUCKETS",
    "MAX_CELLS",
    "MAX_TOP",
    "aggregate",
    "auto_interval",
    "csv_cell",
    "group_field",
    "parse_request",
    "to_csv",
    "to_json",
]

DEFAULT_FROM = "-24h"
MAX_TOP = 100
MAX_BUCKETS = 1_500
MAX_CELLS = 25_000
AUTO_BUCKETS = 200  # `interval=auto` picks the finest step with at most this many buckets
_MIN = 60_000_000
AUTO_STEPS = tuple(m * _MIN for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440))
_MEASURE = re.compile(r"([a-z0-9]+)(?:\((.*)\))?", re.ASCII | re.DOTALL)
_NO_GROUP = ("message", "ts")  # free text and µs instants: never a useful group


def _str(params: Mapping[str, Any], name: str) -> str | None:
    v = params.get(name)
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool) and name in ("from", "to"):
        return str(v)  # an epoch number in a JSON body
    raise QueryError(f"{name}: expected a string")


def _field(raw: str, name: str) -> str:
    """A core field, or `attrs.KEY` (a bare name that is not a core field is an attribute, as in
    the query language)."""
    f = raw.strip()
    if f in CORE_FIELDS:
        return f
    full = f if f.startswith("attrs.") else "attrs." + f
    try:
        attr_name(full)
    except ValueError:
        raise QueryError(f"{name}: {raw[:60]!r} is not a field name") from None
    return full


def parse_measure(raw: str | None) -> tuple[str, str | None]:
    """`count`, `unique` (of user_id), `unique(F)`, `sum|avg|min|max|p50|p90|p95|p99(F)`."""
    m = _MEASURE.fullmatch((raw or "count").strip())
    if m is None or m.group(1) not in AGG_OPS:
        raise QueryError(f"measure: expected one of {', '.join(AGG_OPS)}, e.g. count or p95(duration_ms)")
    op, arg = m.group(1), m.group(2)
    if op == "count":
        if arg:
            raise QueryError("measure: count takes no field")
        return op, None
    if op == "unique":
        f = _field(arg, "measure") if arg else "user_id"
        if f not in CORE_FIELDS or f in _NO_GROUP:
            raise QueryError(f"measure: unique counts a core field (user_id, session_id, host...), not {f!r}")
        return op, f
    if not arg:
        raise QueryError(f"measure: {op} needs a numeric field, e.g. {op}(duration_ms)")
    f = _field(arg, "measure")
    if f in CORE_FIELDS:
        raise QueryError(f"measure: {f!r} is not numeric; {op} reads numeric attributes like duration_ms")
    return op, f


def _group_by(raw: Any) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        items = raw.split(",")
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        items = raw
    else:
        raise QueryError("group_by: expected field names, comma-separated or a list")
    fields = tuple(_field(x, "group_by") for x in items)
    if len(fields) > 2:
        raise QueryError("group_by: at most two fields")
    if len(set(fields)) != len(fields):
        raise QueryError("group_by: the same field twice")
    for f in fields:
        if f in _NO_GROUP:
            raise QueryError(f"group_by: cannot group by {f}")
    return fields


def group_field(raw: str, name: str) -> str:
    """One field to group by (analytics' series `breakdown`): QueryError naming `name`."""
    fields = _group_by(raw)
    if len(fields) != 1:
        raise QueryError(f"{name}: expected one field")
    return fields[0].replace("group_by", name)


def _top(raw: Any) -> int:
    if raw is None or raw == "":
        return 10
    if isinstance(raw, str):
        try:
            raw = int(raw)
        except ValueError:
            raise QueryError(f"top: expected an integer, got {raw[:40]!r}") from None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_TOP:
        raise QueryError(f"top: must be an integer between 1 and {MAX_TOP}")
    return raw


def auto_interval(start: int, end: int) -> int:
    """The finest of AUTO_STEPS giving at most AUTO_BUCKETS buckets (a day per 10 minutes: 144);
    a day when even days are more (a range over 200 days, then capped by MAX_BUCKETS)."""
    for step in AUTO_STEPS:
        if _buckets(start, end, step) <= AUTO_BUCKETS:
            return step
    return AUTO_STEPS[-1]


def _buckets(start: int, end: int, step: int) -> int:
    first = start - start % step
    return (end - first + step - 1) // step


def _interval(raw: str | None, start: int, end: int) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    if raw.strip() == "auto":
        return auto_interval(start, end)
    us = parse_interval(raw)
    if not AUTO_STEPS[0] <= us <= AUTO_STEPS[-1] or us % 1_000_000:
        raise QueryError("interval: must be auto or a duration from 1m to 1d (1m, 5m, 1h, 1d)")
    return us


def parse_request(params: Mapping[str, Any], now: int | None = None) -> AggregateRequest:
    """The request from a query string or a JSON body (same names); QueryError naming the
    parameter for anything wrong."""
    unknown = set(params) - {"q", "from", "to", "measure", "group_by", "top", "interval", "format"}
    if unknown:
        raise QueryError(f"{sorted(unknown)[0][:40]}: unknown parameter")
    now = now_us() if now is None else now
    query = parse_query(_str(params, "q"))
    start = parse_time(_str(params, "from") or DEFAULT_FROM, "from", now)
    end = parse_time(_str(params, "to") or "now", "to", now)
    assert start is not None and end is not None
    if end <= start:
        raise QueryError("to: must be after from")
    op, field = parse_measure(_str(params, "measure"))
    group_by = _group_by(params.get("group_by"))
    top = _top(params.get("top"))
    interval = _interval(_str(params, "interval"), start, end)
    buckets = 1 if interval is None else _buckets(start, end, interval)
    if buckets > MAX_BUCKETS:
        raise QueryError(
            f"interval: {buckets} buckets exceeds {MAX_BUCKETS}; use a coarser interval or a shorter range"
        )
    groups = 1 + (top + 1 if group_by else 0) + (top * (top + 1) if len(group_by) > 1 else 0)
    if buckets * groups > MAX_CELLS:
        raise QueryError(
            f"top: {buckets} buckets x {groups} groups exceeds {MAX_CELLS} cells; lower top or use a coarser interval"
        )
    return AggregateRequest(query, start, end, op, field, group_by, top, interval)


def check_format(raw: Any) -> str:
    if raw is None or raw == "":
        return "json"
    if raw not in ("json", "csv"):
        raise QueryError("format: expected json or csv")
    return str(raw)


def aggregate(store: Store, project_id: int, req: AggregateRequest) -> AggBucket:
    return store.aggregate(project_id, req)


def _measure_name(req: AggregateRequest) -> str:
    return req.op if req.field is None else f"{req.op}({req.field})"


def _bucket(b: AggBucket, req: AggregateRequest, key: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"key": b.key} if key else {}
    out["count"] = b.count
    out["value"] = b.value
    if req.interval:
        out["series"] = [{"t": format_ts(t), "count": n, "value": v} for t, n, v in b.series]
    if b.other is not None:
        out["groups"] = [_bucket(g, req, key=True) for g in b.groups]
        out["other"] = _bucket(b.other, req)
    return out


def to_json(req: AggregateRequest, root: AggBucket) -> dict[str, Any]:
    body = _bucket(root, req)
    out: dict[str, Any] = {
        "measure": _measure_name(req),
        "group_by": list(req.group_by),
        "top": req.top,
        "from": format_ts(req.start),
        "to": format_ts(req.end),
        "interval_s": req.interval // 1_000_000 if req.interval else None,
        "total": {k: body[k] for k in ("count", "value", "series") if k in body},
    }
    if req.group_by:
        out["groups"] = body["groups"]
        out["other"] = body["other"]
    return out


_FORMULA = tuple("=+-@\t\r")


def csv_cell(v: Any) -> str:
    """A CSV cell: None empty, a string a spreadsheet would run as a formula (= + - @, or a TAB
    or CR before one) prefixed with ' (OWASP CSV injection); numbers as they are (-3 stays -3)."""
    s = "" if v is None else str(v)
    return "'" + s if isinstance(v, str) and s.startswith(_FORMULA) else s


def to_csv(req: AggregateRequest, root: AggBucket) -> str:
    """One row per bucket and time bucket: `row` (total, group, other), the group keys, `t`
    (empty for the whole range), count and value. Keys a spreadsheet would take for a formula
    (=, +, -, @) are prefixed with '."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "group_1", "group_2", "t", "count", "value"])

    def rows(kind: str, b: AggBucket, k1: Any, k2: Any) -> None:
        w.writerow([kind, csv_cell(k1), csv_cell(k2), "", b.count, csv_cell(b.value)])
        for t, n, v in b.series:
            w.writerow([kind, csv_cell(k1), csv_cell(k2), format_ts(t), n, csv_cell(v)])

    rows("total", root, None, None)
    for g in root.groups:
        rows("group", g, g.key, None)
        for h in g.groups:
            rows("group", h, g.key, h.key)
        if g.other is not None:
            rows("other", g.other, g.key, None)
    if root.other is not None:
        rows("other", root.other, None, None)
    return buf.getvalue()

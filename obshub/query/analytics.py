"""Product analytics over factual `kind=event` records: names, properties, values, series.
The store aggregates; this module validates arguments and shapes the contract's JSON.

Names and series count every occurrence in the range (covering indexes of `kind=event` rows);
properties and values read the newest 10,000 occurrences (`FACET_SAMPLE`) and say so with
`counted` and `approximate`: a frequent event's values no longer cost every occurrence ever."""

from __future__ import annotations

from typing import Any

from obshub.errors import QueryError
from obshub.events import format_ts
from obshub.query.aggregate import MAX_CELLS, MAX_TOP, group_field
from obshub.query.search import check_limit
from obshub.store.base import AggBucket, AggregateRequest, Store
from obshub.store.querylang import And, Field, Node

__all__ = ["event_names", "event_properties", "event_series", "property_values"]

MAX_POINTS = 5_000  # buckets per series: ~7 months hourly; keeps responses and charts bounded


def event_names(store: Store, project_id: int, start: int | None, end: int | None, limit: int = 100) -> dict[str, Any]:
    rows = store.event_names(project_id, start, end, check_limit(limit))
    return {"events": [{"name": n, "count": c} for n, c in rows]}


def _need(value: str | None, name: str) -> str:
    if not value:
        raise QueryError(f"{name}: required")
    return value


def event_properties(
    store: Store, project_id: int, event: str | None, start: int | None, end: int | None
) -> dict[str, Any]:
    found = store.event_properties(project_id, _need(event, "event"), start, end)
    return {"properties": found.value, "counted": found.counted, "approximate": found.approximate}


def property_values(
    store: Store,
    project_id: int,
    event: str | None,
    prop: str | None,
    start: int | None,
    end: int | None,
    limit: int = 100,
) -> dict[str, Any]:
    check_limit(limit)
    prop = _need(prop, "property")
    if any(c in prop for c in "\"'\\"):
        raise QueryError("property: quotes are not allowed in a property name")
    if "\x00" in prop:  # SQLite takes no NUL in SQL text or a JSON path (a 503 there)
        raise QueryError("property: NUL is not allowed in a property name")
    found = store.property_values(project_id, _need(event, "event"), prop, start, end, limit)
    return {
        "values": [{"value": v, "count": c} for v, c in found.value],
        "counted": found.counted,
        "approximate": found.approximate,
    }


def event_series(
    store: Store,
    project_id: int,
    event: str | None,
    interval_us: int,
    start: int,
    end: int,
    unique: bool,
    q: Node | None = None,
    breakdown: str | None = None,
    top: int = 5,
) -> dict[str, Any]:
    if end <= start:
        raise QueryError("to: must be after from")
    first = start - start % interval_us
    n = (end - first + interval_us - 1) // interval_us
    if n > MAX_POINTS:
        raise QueryError(f"interval: {n} buckets exceeds {MAX_POINTS}; use a coarser interval or a shorter range")
    if not 1 <= top <= MAX_TOP:
        raise QueryError(f"top: must be an integer between 1 and {MAX_TOP}")
    if q is None and breakdown is None:
        counts = dict(store.event_series(project_id, event or None, interval_us, start, end, unique))
        return {"points": _points(counts, first, n, interval_us)}
    # A filter or a breakdown: the aggregation API (docs/aggregate.md) computes it, top values
    # by event count and the rest as `other`.
    field = None if breakdown is None else group_field(breakdown, "breakdown")
    if field is not None and n * (top + 2) > MAX_CELLS:
        raise QueryError(f"top: {n} buckets x {top + 2} groups exceeds {MAX_CELLS} cells; use a coarser interval")
    parts: list[Node] = [Field("kind", "=", "event")]
    if event:
        parts.append(Field("name", "=", event, quoted=True))
    if q is not None:
        parts.append(q)
    req = AggregateRequest(
        And(tuple(parts)),
        start,
        end,
        "unique" if unique else "count",
        "user_id" if unique else None,
        (field,) if field else (),
        top,
        interval_us,
    )
    root = store.aggregate(project_id, req)
    out: dict[str, Any] = {"points": _points(_values(root), first, n, interval_us)}
    if field is not None:
        out["breakdown"] = [{"value": g.key, "points": _points(_values(g), first, n, interval_us)} for g in root.groups]
        if root.other is not None:
            out["other"] = {"points": _points(_values(root.other), first, n, interval_us)}
    return out


def _values(b: AggBucket) -> dict[int, int]:
    return {t: int(v or 0) for t, _, v in b.series}


def _points(counts: dict[int, int], first: int, n: int, interval_us: int) -> list[dict[str, Any]]:
    # Every bucket, zeros included: a chart of sparse points would hide quiet hours.
    return [
        {"t": format_ts(first + i * interval_us), "count": counts.get(first + i * interval_us, 0)} for i in range(n)
    ]

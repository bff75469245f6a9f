"""A product analysis as one request object, run over a range and shown as one table: what the
Analytics page's tabs, their CSV and an analysis panel on a dashboard share (docs/analytics.md,
"Web").

A request is the analysis API's body without the range, plus `analysis`:

- `funnel`, `retention`, `experiment`: exactly the body of POST /api/v1/analytics/<analysis>,
  computed by obshub/query/funnels.py (the same call the API makes);
- `series` (the Trends tab): `events` (0-5 names compared on one chart; none: every event),
  `interval`, `unique`, `q`, `breakdown`, `top`: GET /api/v1/analytics/series once per event.

The range comes apart (the tab's `from`/`to`, or the dashboard's), so a saved analysis follows
its dashboard's range. `table` flattens an answer into the rows the page and the CSV show; the
CSV's numbers are the API's (rates as fractions 0-1, rounded as the API rounds them).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from obshub.errors import QueryError
from obshub.events import now_us
from obshub.query import analytics, funnels
from obshub.query.aggregate import MAX_TOP, csv_cell, group_field
from obshub.query.search import parse_query
from obshub.query.times import parse_interval, parse_time
from obshub.store.base import Store
from obshub.store.querylang import And, Field

__all__ = [
    "ANALYSES",
    "DEFAULT_FROM",
    "FIELDS",
    "MAX_EVENTS",
    "Table",
    "check",
    "label",
    "run",
    "series_columns",
    "table",
    "to_csv",
    "unknown_events",
]

ANALYSES = ("series", "funnel", "retention", "experiment")
MAX_EVENTS = 5  # events compared on one Trends chart: five lines stay readable
# Each analysis' fields (its API body's, less the range). A funnel's `unit` (user|session), when
# the funnel API has it, is one more name here (the Funnels form then needs its <select>).
FIELDS: dict[str, frozenset[str]] = {
    "series": frozenset({"events", "interval", "unique", "q", "breakdown", "top"}),
    "funnel": frozenset({"steps", "window", "order", "breakdown", "unit"}),
    "retention": frozenset({"start", "return", "period", "periods", "bounded"}),
    "experiment": frozenset({"steps", "window", "order", "variant", "control", "unit"}),
}
DEFAULT_FROM = {"series": "-24h", "funnel": "-30d", "retention": "-28d", "experiment": "-30d"}


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[Any]]


def check(request: Any, where: str = "request") -> dict[str, Any]:
    """A stored or imported request -> the request (QueryError naming `where.<field>`), checked
    as its API checks it (the range apart: it is the dashboard's or the page's)."""
    if not isinstance(request, dict):
        raise QueryError(f"{where}: expected an object")
    analysis = request.get("analysis")
    if analysis not in ANALYSES:
        raise QueryError(f"{where}.analysis: expected one of {', '.join(ANALYSES)}")
    body = {k: v for k, v in request.items() if k != "analysis"}
    unknown = sorted(set(body) - FIELDS[analysis])
    if unknown:
        raise QueryError(f"{where}.{unknown[0][:40]}: unknown parameter (the range is the dashboard's or the page's)")
    try:
        if analysis == "series":
            _series_args(body)
        elif analysis == "retention":
            funnels.parse_retention(dict(body))
        else:
            _check_funnel(body, analysis == "experiment")
    except QueryError as e:
        raise QueryError(f"{where}.{e}") from None
    return {"analysis": analysis, **body}


def _check_funnel(body: Mapping[str, Any], experiment: bool) -> None:
    funnel_body = {k: v for k, v in body.items() if k not in ("variant", "control")}
    if not experiment:
        funnels.parse_funnel(funnel_body, now_us())
        return
    if body.get("variant") in (None, ""):
        raise QueryError("variant: required (the attribute that holds the variant)")
    try:  # the variant is read as the breakdown is: the same attribute-name rules
        funnels.parse_funnel({**funnel_body, "breakdown": body["variant"]}, now_us())
    except QueryError as e:
        raise QueryError(str(e).replace("breakdown:", "variant:", 1)) from None


@dataclass(frozen=True)
class _SeriesArgs:
    events: tuple[str | None, ...]
    interval_us: int
    unique: bool
    q: str
    breakdown: str | None
    top: int


def _series_args(body: Mapping[str, Any]) -> _SeriesArgs:
    events = body.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
        raise QueryError("events: expected a list of event names")
    if len(events) > MAX_EVENTS:
        raise QueryError(f"events: at most {MAX_EVENTS} compared on one chart")
    if len(set(events)) != len(events):
        raise QueryError("events: an event is listed twice")
    raw_interval = body.get("interval")
    if raw_interval is not None and not isinstance(raw_interval, str):
        raise QueryError("interval: expected hour, day or a duration like 15m")
    unique = body.get("unique", False)
    if not isinstance(unique, bool):
        raise QueryError("unique: expected true or false")
    q = body.get("q")
    q = "" if q is None else q
    if not isinstance(q, str):
        raise QueryError("q: expected a string")
    try:
        parse_query(q)
    except QueryError as e:
        raise QueryError(f"q: {e}") from None
    breakdown = body.get("breakdown")
    if breakdown is not None and not isinstance(breakdown, str):
        raise QueryError("breakdown: expected an attribute name")
    breakdown = breakdown or None
    if breakdown is not None:
        group_field(breakdown, "breakdown")
        if len(events) > 1:
            raise QueryError("breakdown: break down one event, or compare events, not both")
    top = body.get("top", 5)
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= MAX_TOP:
        raise QueryError(f"top: must be an integer between 1 and {MAX_TOP}")
    return _SeriesArgs(tuple(events) or (None,), parse_interval(raw_interval), unique, q, breakdown, top)


def run(store: Store, pid: int, request: Mapping[str, Any], time_from: str, time_to: str, now: int) -> dict[str, Any]:
    """The analysis' answer over [time_from, time_to) ("": its default and now): the API's JSON;
    for `series` {"series": [{"event", ...GET /api/v1/analytics/series}]}."""
    analysis = str(request["analysis"])
    body = {k: v for k, v in request.items() if k != "analysis"}
    body["from"], body["to"] = time_from or DEFAULT_FROM[analysis], time_to or "now"
    if analysis == "funnel":
        return funnels.funnel(store, pid, funnels.parse_funnel(body, now))
    if analysis == "retention":
        return funnels.retention(store, pid, body, now)
    if analysis == "experiment":
        return funnels.experiment(store, pid, body, now)
    args = _series_args(body)
    start, end = parse_time(body["from"], "from", now), parse_time(body["to"], "to", now)
    assert start is not None and end is not None
    q = parse_query(args.q)
    out = []
    for ev in args.events:
        one = analytics.event_series(
            store, pid, ev, args.interval_us, start, end, args.unique, q, args.breakdown, args.top
        )
        out.append({"event": ev, **one})
    return {"series": out}


def unknown_events(store: Store, pid: int, names: Sequence[str]) -> list[str]:
    """The names no `kind=event` record of the project has (ever: a range without them is an
    empty answer, a typo is an error). One count per name, at most 10 (a funnel's steps); on
    SQLite a range of the (project, name, ts) index of events (ix_events_ev_name): a typo
    costs nothing, a name with 1M events one pass over its index entries."""
    kind = Field("kind", "=", "event")
    return [
        n
        for n in dict.fromkeys(names)
        if not store.count(pid, And((kind, Field("name", "=", n, quoted=True))), None, None)
    ]


# ------------------------------------------------------------------------------------ tables


def label(value: Any) -> str:
    """A breakdown or variant value as a column or row name: strings as they are, no value as
    `(none)`, other JSON values as JSON (`true`, `3`)."""
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _step_name(s: Mapping[str, Any]) -> str:
    return f"{s['event']} ({s['q']})" if s.get("q") else str(s["event"])


def table(request: Mapping[str, Any], result: Mapping[str, Any]) -> Table:
    """The answer as the rows a tab shows and its CSV holds (column names: the API's fields)."""
    analysis = request["analysis"]
    if analysis == "funnel":
        return _funnel_table(result, bool(request.get("breakdown")))
    if analysis == "retention":
        n = len(result["curve"])
        period = result["period"]
        return Table(
            ["cohort", "users", *(f"{period}_{i}" for i in range(1, n + 1))],
            [[c["cohort"], c["users"], *c["returned"]] for c in result["cohorts"]],
        )
    if analysis == "experiment":
        return _experiment_table(result)
    return _series_table(result)


def _noun(result: Mapping[str, Any]) -> str:
    """What the answer counts: "users", or "sessions" for the unit `session`."""
    return f"{result.get('unit', 'user')}s"


def _funnel_table(result: Mapping[str, Any], by_group: bool) -> Table:
    noun = _noun(result)
    cols = ["step", "event", "q", noun, "from_previous", "from_first", "median_seconds"]
    groups: list[tuple[str, list[dict[str, Any]]]] = [("all", result["steps"])]
    if by_group:
        groups += [(label(g["value"]), g["steps"]) for g in result.get("breakdown", [])]
        if "other" in result:
            groups.append(("other", result["other"]["steps"]))
    rows = []
    for name, steps in groups:
        for i, s in enumerate(steps, 1):
            row = [i, s["event"], s["q"], s[noun], s["from_previous"], s["from_first"], s["median_seconds"]]
            rows.append([name, *row] if by_group else row)
    return Table(["group", *cols] if by_group else cols, rows)


def _experiment_table(result: Mapping[str, Any]) -> Table:
    cmp = {label(c["variant"]): c for c in result["comparisons"]}
    noun = _noun(result)
    rows = []
    for v in result["variants"]:
        c = cmp.get(label(v["value"]))
        rate = next(
            (k["control_rate"] for k in result["comparisons"] if label(k["control"]) == label(v["value"])),
            round(v["converted"] / v[noun], 6) if v[noun] else None,
        )
        if c is None:  # the control (or a lone variant)
            rows.append([label(v["value"]), v[noun], v["converted"], rate, None, None, None, None, None, None])
        else:
            lo, hi = c["ci95"]
            stats = [c["variant_rate"], c["difference"], c["z"], c["p_value"], lo, hi, c["reading"]]
            rows.append([label(v["value"]), v[noun], v["converted"], *stats])
    cols = ["variant", noun, "converted", "rate", "difference", "z", "p_value", "ci95_low", "ci95_high", "reading"]
    return Table(cols, rows)


def series_columns(result: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(name, points) of each line of a Trends answer: one per event, or with a breakdown each
    top value and `other`."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for s in result["series"]:
        name = s["event"] or "all events"
        if "breakdown" in s:
            out += [(label(b["value"]), b["points"]) for b in s["breakdown"]]
            if "other" in s:
                out.append(("other", s["other"]["points"]))
        else:
            out.append((name, s["points"]))
    return out


def _series_table(result: Mapping[str, Any]) -> Table:
    cols = series_columns(result)
    times = [p["t"] for p in result["series"][0]["points"]] if result["series"] else []
    return Table(
        ["t", *(n for n, _ in cols)], [[t, *(pts[i]["count"] for _, pts in cols)] for i, t in enumerate(times)]
    )


def to_csv(t: Table) -> str:
    """The table as CSV: empty cells for no value, formula-like strings neutralised (csv_cell)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([csv_cell(c) for c in t.columns])
    for row in t.rows:
        w.writerow([csv_cell(v) for v in row])
    return buf.getvalue()

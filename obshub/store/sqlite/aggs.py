"""SQL of the SQLite store's aggregations: facets, error groups, analytics. Plain functions of
a WHERE clause over `events e` (the store's `_where`), so tests/store/test_sqlite_plans.py can
EXPLAIN exactly what the store runs.

Every one reads a bounded set, measured on the 5M-event bench store (2 shared cores):
- facets, analytics properties and values: the newest `sample` matches (10,000), one walk;
- the errors list and its sparklines: a covering index of error occurrences in the range;
- analytics names and series: covering indexes of `kind=event` rows. Some are named with
  INDEXED BY: with statistics (ops.analyze_if_due) the planner picked a partial index it
  had to read the table for (errors: ~600 ms) or, without, walked every event of the range
  (event names over 7 days: 1.2 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["check_series", "event_names", "event_series", "facets", "group_series", "group_stats", "newest_events"]

Sql = tuple[str, list[Any]]


def facets(where: str, params: Sequence[Any], fields: Sequence[str], sample: int) -> Sql:
    """Rows: (-1, None, matches up to sample + 1), then (field index, value, count) over the
    newest `sample` matches. One walk: the newest sample + 1 matches (the extra one only tells
    whether there were more), then each field's counts over the newest `sample` of them."""
    cols = "".join(f", e.{f}" for f in fields)
    arms = "".join(
        f" UNION ALL SELECT {i}, {f}, count(*) FROM t WHERE {f} IS NOT NULL GROUP BY {f}" for i, f in enumerate(fields)
    )
    return (
        f"WITH s AS MATERIALIZED (SELECT e.ts, e.id{cols} FROM events e WHERE {where} "
        "ORDER BY e.ts DESC, e.id DESC LIMIT ?), "
        "t AS MATERIALIZED (SELECT * FROM s ORDER BY ts DESC, id DESC LIMIT ?) "
        f"SELECT -1, NULL, (SELECT count(*) FROM s){arms}",
        [*params, sample + 1, sample],
    )


def newest_events(
    where: str, params: Sequence[Any], col: str, sample: int, select: str, tail: Sequence[Any] = ()
) -> Sql:
    """Rows: (None, None, matches up to sample + 1), then `select`'s (3 columns) over `t`: the
    newest `sample` analytics events matching (`where` names one), with `col` as `t.p`."""
    return (
        f"WITH s AS MATERIALIZED (SELECT e.ts, e.id, {col} AS p FROM events e INDEXED BY ix_events_ev_name "
        f"WHERE {where} ORDER BY e.ts DESC, e.id DESC LIMIT ?), "
        "t AS MATERIALIZED (SELECT * FROM s ORDER BY ts DESC, id DESC LIMIT ?) "
        f"SELECT NULL, NULL, (SELECT count(*) FROM s) UNION ALL SELECT * FROM ({select})",
        [*params, sample + 1, sample, *tail],
    )


def _ev_index(by_name: bool) -> str:
    return "INDEXED BY ix_events_ev_name" if by_name else "INDEXED BY ix_events_ev_ts"


def event_names(where: str, params: Sequence[Any], ranged: bool, limit: int) -> Sql:
    """Over all time the name index is read whole, already grouped; with a range the time
    index reads only the range (a 24 h view of 30 days of events reads 1/30 of them)."""
    return (
        f"SELECT e.name, count(*) AS n FROM events e {_ev_index(not ranged)} WHERE {where} "
        "GROUP BY e.name ORDER BY n DESC, e.name LIMIT ?",
        [*params, limit],
    )


def event_series(where: str, params: Sequence[Any], named: bool, interval_us: int, unique: bool) -> Sql:
    agg = "count(DISTINCT e.user_id)" if unique else "count(*)"
    return (
        f"SELECT (e.ts / ?) * ? AS t, {agg} FROM events e {_ev_index(named)} WHERE {where} GROUP BY t ORDER BY t",
        [interval_us, interval_us, *params],
    )


_ERRORS = "e.kind = 'error' AND e.group_id IS NOT NULL"  # the partial index's WHERE, literally


def group_stats(where: str, params: Sequence[Any], ids: Sequence[str] | None) -> Sql:
    """Per group: count, distinct users, distinct hosts (comma-joined), first and last ts. The
    list reads the covering index of error occurrences in the range (43k at 5M: ~60 ms); a few
    groups' stats (`ids`) seek their own occurrences."""
    if ids is None:
        index, where, extra = "INDEXED BY ix_events_errors", f"{where} AND {_ERRORS}", []
    else:  # no `group_id IS NOT NULL` here: with it the planner scanned every group's range
        index, extra = "INDEXED BY ix_events_group_id", list(ids)
        where = f"{where} AND e.kind = 'error' AND e.group_id IN ({','.join('?' * len(ids))})"
    return (
        "SELECT e.group_id, count(*), count(DISTINCT e.user_id), group_concat(DISTINCT e.host), "
        f"min(e.ts), max(e.ts) FROM events e {index} WHERE {where} GROUP BY e.group_id",
        [*params, *extra],
    )


def group_series(where: str, params: Sequence[Any], interval_us: int) -> Sql:
    return (
        f"SELECT e.group_id, (e.ts / ?) * ? AS t, count(*) FROM events e INDEXED BY ix_events_errors "
        f"WHERE {where} AND {_ERRORS} GROUP BY e.group_id, t ORDER BY e.group_id, t",
        [interval_us, interval_us, *params],
    )


def check_series(project_id: int, names: Sequence[str], start: int, end: int, interval_us: int) -> Sql:
    """Rows (name, bucket, results, up, mean latency) of kind=check results. The partial index
    of check events by (name, ts) reads each check's range only: a 90-day bar of 100 checks at
    60 s reads their 13M results, never the logs beside them. `kind = 'check'` is written
    literally: SQLite uses a partial index only when the query's WHERE names its condition."""
    up, lat = "json_type(e.attrs, '$.up')", "json_type(e.attrs, '$.latency_ms')"
    return (
        f"SELECT e.name, (e.ts / ?) * ? AS t, count(*), sum({up} = 'true'), "
        f"avg(CASE WHEN {lat} IN ('integer', 'real') THEN json_extract(e.attrs, '$.latency_ms') END) "
        "FROM events e INDEXED BY ix_events_checks "
        f"WHERE e.project_id = ? AND e.kind = 'check' AND e.name IN ({','.join('?' * len(names))}) "
        f"AND e.ts >= ? AND e.ts < ? AND {up} IS NOT NULL GROUP BY e.name, t ORDER BY e.name, t",
        [interval_us, interval_us, project_id, *names, start, end],
    )

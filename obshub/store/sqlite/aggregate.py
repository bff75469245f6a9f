"""`aggregate` on SQLite: the measure per group and time bucket, exactly (docs/aggregate.md).

Each read is a plain scan of the range through the WHERE of every other read (`Reader.where`):
1. the top groups: `GROUP BY` the first field (then, within those, the second) by count;
2. one labelled scan: every event gets its cell (first-level key or NULL for `other`, second
   level key or NULL, time bucket). Counts, sums, minima and maxima are summed up from the
   finest cells in Python (a group's sum is its sub-groups' sums);
3. `unique` and percentiles do not add up: one `GROUP BY` (count DISTINCT) or one window query
   (row_number over the sorted numbers, keeping the two ranks each percentile interpolates
   between) per level and for the whole range and the buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from obshub.store.aggregate import PERCENTILES, Path, attr_name, build, interpolate
from obshub.store.base import AggBucket, AggKey, AggregateRequest, AggValue
from obshub.store.querylang import CORE_FIELDS
from obshub.store.sqlite.db import Db
from obshub.store.sqlite.reader import Reader

__all__ = ["Aggregator"]


def _attr(key: str, types: str) -> str:
    path = f'$."{key}"'  # attr_name() admitted the name: safe to inline
    return f"CASE WHEN json_type(e.attrs, '{path}') IN ({types}) THEN json_extract(e.attrs, '{path}') END"


def _group_expr(field: str) -> str:
    """A group's key: a core column, or an attribute's text or number (true/false, arrays,
    objects and null belong to no group: they are `other`, as on OpenSearch)."""
    key = attr_name(field)
    if key is None:
        if field not in CORE_FIELDS:
            raise ValueError(f"cannot group by {field!r}")
        return f"e.{field}"
    return _attr(key, "'text', 'integer', 'real'")


def _value_expr(req: AggregateRequest) -> str:
    if req.op == "count":
        return "NULL"
    if req.field is None:
        raise ValueError(f"{req.op}: needs a field")
    if req.op == "unique":
        if req.field not in CORE_FIELDS:
            raise ValueError(f"unique: {req.field!r} is not a core field")
        return f"e.{req.field}"
    key = attr_name(req.field)
    if key is None:
        raise ValueError(f"{req.op}: {req.field!r} is not a numeric attribute")
    return _attr(key, "'integer', 'real'")


class Aggregator:
    def __init__(self, db: Db, reader: Reader) -> None:
        self._db = db
        self._reader = reader

    def aggregate(self, project_id: int, req: AggregateRequest) -> AggBucket:
        if len(req.group_by) > 2:
            raise ValueError("group_by: at most two fields")
        where, params = self._reader.where(project_id, req.query, req.start, req.end)
        g = [_group_expr(f) for f in req.group_by]
        v = _value_expr(req)
        with self._db.snapshot():  # the top groups and the cells they label agree
            top1, top2 = self._tops(where, params, g, req.top)
            labels, lparams = self._labels(g, top1, top2, req.interval, v)
            m = f"WITH m AS (SELECT {labels} FROM events e WHERE {where}) "
            mp = [*lparams, *params]
            cells: dict[tuple[Path, int | None], tuple[int, AggValue]] = {}
            counts = self._additive(m, mp, req, cells)
            if req.op in ("unique", *PERCENTILES):
                for level in range(len(g) + 1):
                    for bucketed in (False, True) if req.interval else (False,):
                        self._exact(m, mp, req, level, bucketed, counts, cells)
        return build(req, top1, top2, cells)

    def _tops(
        self, where: str, params: list[Any], g: list[str], top: int
    ) -> tuple[list[AggKey], dict[AggKey, list[AggKey]]]:
        """The first level's `top` keys by count (ties by key: numbers before text, as SQLite
        sorts), then each one's `top` second-level keys."""
        if not g:
            return [], {}
        rows = self._db.read(
            f"SELECT {g[0]} AS k, count(*) AS n FROM events e WHERE {where} AND k IS NOT NULL "
            "GROUP BY k ORDER BY n DESC, k LIMIT ?",
            [*params, top],
        )
        top1 = [r[0] for r in rows]
        top2: dict[AggKey, list[AggKey]] = {}
        if len(g) > 1 and top1:
            rows = self._db.read(
                "SELECT k1, k2 FROM (SELECT k1, k2, row_number() OVER (PARTITION BY k1 ORDER BY n DESC, k2) AS r "
                f"FROM (SELECT {g[0]} AS k1, {g[1]} AS k2, count(*) AS n FROM events e WHERE {where} "
                f"AND k1 IN ({','.join('?' * len(top1))}) AND k2 IS NOT NULL GROUP BY k1, k2)) "
                "WHERE r <= ? ORDER BY k1, r",
                [*params, *top1, top],
            )
            for k1, k2 in rows:
                top2.setdefault(k1, []).append(k2)
        return top1, top2

    @staticmethod
    def _labels(
        g: list[str], top1: list[AggKey], top2: dict[AggKey, list[AggKey]], interval: int | None, v: str
    ) -> tuple[str, list[Any]]:
        """The columns of `m`: c1, c2 (the cell's keys, NULL for `other`), t (bucket), v (value)."""
        cols, params = [], []
        if g and top1:
            cols.append(f"CASE WHEN {g[0]} IN ({','.join('?' * len(top1))}) THEN {g[0]} END AS c1")
            params += top1
        else:
            cols.append("NULL AS c1")
        pairs = [(k1, k2) for k1, ks in top2.items() for k2 in ks]
        if len(g) > 1 and pairs:
            cols.append(
                f"CASE WHEN ({g[0]}, {g[1]}) IN (VALUES {','.join(['(?, ?)'] * len(pairs))}) THEN {g[1]} END AS c2"
            )
            params += [k for p in pairs for k in p]
        else:
            cols.append("NULL AS c2")
        if interval:
            cols.append("(e.ts / ?) * ? AS t")
            params += [interval, interval]
        else:
            cols.append("NULL AS t")
        cols.append(f"{v} AS v")
        return ", ".join(cols), params

    def _additive(
        self, m: str, mp: list[Any], req: AggregateRequest, cells: dict[tuple[Path, int | None], tuple[int, AggValue]]
    ) -> dict[tuple[Path, int | None], int]:
        """Counts of every cell, and the value of count/sum/avg/min/max, from the finest cells."""
        rows = self._db.read(
            f"{m}SELECT c1, c2, t, count(*), count(v), total(v), min(v), max(v) FROM m GROUP BY c1, c2, t", mp
        )
        levels = len(req.group_by)
        acc: dict[tuple[Path, int | None], list[Any]] = {}
        for c1, c2, t, n, nv, s, lo, hi in rows:
            paths: list[Path] = [()]
            if levels >= 1:
                paths.append((c1,))
            if levels == 2 and c1 is not None:
                paths.append((c1, c2))
            for p in paths:
                for b in (None, t) if req.interval else (None,):
                    a = acc.get((p, b))
                    if a is None:
                        acc[(p, b)] = [n, nv, s, lo, hi]
                    else:
                        a[0] += n
                        a[1] += nv
                        a[2] += s
                        if lo is not None and (a[3] is None or lo < a[3]):
                            a[3] = lo
                        if hi is not None and (a[4] is None or hi > a[4]):
                            a[4] = hi
        counts = {}
        for key, (n, nv, s, lo, hi) in acc.items():
            counts[key] = n
            value: AggValue = None
            if req.op == "count":
                value = n
            elif nv and req.op == "sum":
                value = float(s)
            elif nv and req.op == "avg":
                value = float(s) / nv
            elif nv and req.op == "min":
                value = float(lo)
            elif nv and req.op == "max":
                value = float(hi)
            cells[key] = (n, value)
        return counts

    def _exact(
        self,
        m: str,
        mp: list[Any],
        req: AggregateRequest,
        level: int,
        bucketed: bool,
        counts: dict[tuple[Path, int | None], int],
        cells: dict[tuple[Path, int | None], tuple[int, AggValue]],
    ) -> None:
        """`unique` or a percentile per cell of one level, for the range or per bucket."""
        part = ["c1", "c2"][:level] + (["t"] if bucketed else [])
        cols = "".join(f"{c}, " for c in part)
        if req.op == "unique":
            group = f" GROUP BY {', '.join(part)}" if part else ""
            rows: Sequence[tuple[Any, ...]] = self._db.read(f"{m}SELECT {cols}count(DISTINCT v) FROM m{group}", mp)
            for r in rows:
                key = self._key(r, level, bucketed)
                if key in counts:
                    cells[key] = (counts[key], int(r[-1]))
            return
        q = PERCENTILES[req.op]
        by = f"PARTITION BY {', '.join(part)} " if part else ""
        rows = self._db.read(
            f"{m}, r AS (SELECT {cols}v, row_number() OVER (w ORDER BY v) - 1 AS i, count(*) OVER w AS n "
            f"FROM m WHERE v IS NOT NULL WINDOW w AS ({by})) "
            f"SELECT {cols}n, i, v FROM r WHERE i - CAST(? * (n - 1) AS INTEGER) IN (0, 1)",
            [*mp, q],
        )
        found: dict[tuple[Path, int | None], tuple[int, dict[int, float]]] = {}
        for r in rows:
            key = self._key(r, level, bucketed)
            n, i, x = r[-3], r[-2], r[-1]
            found.setdefault(key, (n, {}))[1][i] = x
        for key, (n, vals) in found.items():
            if key not in counts:
                continue
            lo = int(q * (n - 1))
            cells[key] = (counts[key], interpolate(q, n, vals[lo], vals.get(lo + 1)))

    @staticmethod
    def _key(r: Sequence[Any], level: int, bucketed: bool) -> tuple[Path, int | None]:
        """The cell of a row that starts with its `level` keys, then its bucket when `bucketed`."""
        return tuple(r[:level]), r[level] if bucketed else None

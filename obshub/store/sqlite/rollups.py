"""Rollups (`obshub.store.base.RollupRow`) in the `rollups` table, keyed by (project, metric,
interval, bucket, group): a bucket's rows are replaced in one transaction, so a recomputed
bucket is stored once whatever ran before (the OpenSearch twin is `opensearch/rollups.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from obshub.store.base import RollupRow
from obshub.store.sqlite.db import Db

__all__ = ["Rollups"]


class Rollups:
    def __init__(self, db: Db) -> None:
        self._db = db

    def put(self, project_id: int, metric: str, interval: str, start: int, end: int, rows: Sequence[RollupRow]) -> None:
        with self._db.write() as w:
            w.execute(
                "DELETE FROM rollups WHERE project_id = ? AND metric = ? AND interval = ? AND t >= ? AND t < ?",
                (project_id, metric, interval, start, end),
            )
            w.executemany(
                "INSERT OR REPLACE INTO rollups (project_id, metric, interval, t, grp, count, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(project_id, r.metric, r.interval, r.t, r.group, r.count, r.value) for r in rows],
            )

    def series(
        self, project_id: int, metric: str, interval: str, start: int, end: int, group: str | None
    ) -> list[RollupRow]:
        sql = "SELECT grp, t, count, value FROM rollups WHERE project_id = ? AND metric = ? AND interval = ? "
        sql += "AND t >= ? AND t < ?"
        params: list[Any] = [project_id, metric, interval, start, end]
        if group is not None:
            sql += " AND grp = ?"
            params.append(group)
        rows = self._db.read(sql + " ORDER BY grp, t", params)
        return [RollupRow(metric, g, interval, int(t), int(n), v) for g, t, n, v in rows]

    def delete(self, before: int, project_id: int | None, metric: str | None) -> int:
        sql = "DELETE FROM rollups WHERE t < ?"
        params: list[Any] = [before]
        if project_id is not None:
            sql += " AND project_id = ?"
            params.append(project_id)
            if metric is not None:
                sql += " AND metric = ?"
                params.append(metric)
        with self._db.write() as w:
            return int(w.execute(sql, params).rowcount)

"""Error groups: their records (`error_groups`), their stats and sparklines over the stored
occurrences, and the triage updates (resolve, ignore, merge).

Groups are *created and reopened* by the writer, in the transaction that stores their
occurrences (writer.py); this module only reads them and applies what a user decides. The
stats read the covering index of error occurrences in a range (aggs.py: 43k at 5M, ~60 ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from obshub.errors import NotFound
from obshub.store.base import GroupRecord, GroupStats
from obshub.store.querylang import Node
from obshub.store.sqlite import aggs
from obshub.store.sqlite.db import Db
from obshub.store.sqlite.reader import Reader

__all__ = ["Groups"]


class Groups:
    def __init__(self, db: Db, reader: Reader) -> None:
        self._db = db
        self._reader = reader  # the WHERE of a range and query, as every read compiles it

    def get(self, project_id: int, ids: Sequence[str] | None = None) -> list[GroupRecord]:
        sql = (
            "SELECT id, title, type, culprit, level, version, state, first_seen, resolved_at, regressed_at, "
            "merged_into FROM error_groups WHERE project_id = ?"
        )
        params: list[Any] = [project_id]
        if ids is not None:
            if not ids:
                return []
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        return [GroupRecord(*r) for r in self._db.read(sql, params)]

    def stats(
        self, project_id: int, query: Node | None, start: int | None, end: int | None, ids: Sequence[str] | None = None
    ) -> dict[str, GroupStats]:
        if ids is not None and not ids:
            return {}
        rows = self._db.read(*aggs.group_stats(*self._reader.where(project_id, query, start, end), ids))
        return {r[0]: GroupStats(r[1], r[2], sorted((r[3] or "").split(",")) if r[3] else [], r[4], r[5]) for r in rows}

    def series(self, project_id: int, start: int, end: int, interval_us: int) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        where, params = self._reader.where(project_id, None, start, end)
        for gid, t, n in self._db.read(*aggs.group_series(where, params, interval_us)):
            out.setdefault(gid, []).append((t, n))
        return out

    def update(
        self,
        project_id: int,
        group_id: str,
        state: str | None = None,
        resolved_at: int | None = None,
        merged_into: str | None = None,
    ) -> GroupRecord:
        sets, params = [], []
        if state is not None:
            sets += ["state = ?", "resolved_at = ?"]
            params += [state, resolved_at]
        if merged_into is not None:
            sets.append("merged_into = ?")
            params.append(merged_into)
        with self._db.write() as w:
            if sets:
                w.execute(
                    f"UPDATE error_groups SET {', '.join(sets)} WHERE project_id = ? AND id = ?",
                    [*params, project_id, group_id],
                )
        found = self.get(project_id, [group_id])
        if not found:
            raise NotFound(f"no error group {group_id!r}")
        return found[0]

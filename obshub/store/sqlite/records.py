"""Records (`obshub.store.base.Record`) in the `records` table: one row per (kind, key), the
version checked and bumped inside the write transaction, so a compare-and-set is atomic (the
OpenSearch twin is `opensearch/records.py`)."""

from __future__ import annotations

import json
from typing import Any

from obshub.errors import Conflict
from obshub.events import now_us
from obshub.store.base import MAX_RECORDS, Record
from obshub.store.sqlite.db import Db

__all__ = ["Records"]


def _record(kind: str, key: str, version: int, updated_at: int, value: str) -> Record:
    return Record(kind, key, json.loads(value), int(version), int(updated_at))


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Records:
    def __init__(self, db: Db) -> None:
        self._db = db

    def get(self, kind: str, key: str) -> Record | None:
        rows = self._db.read("SELECT version, updated_at, value FROM records WHERE kind = ? AND key = ?", (kind, key))
        return _record(kind, key, *rows[0]) if rows else None

    def list(self, kind: str, prefix: str = "") -> list[Record]:
        rows = self._db.read(
            "SELECT key, version, updated_at, value FROM records WHERE kind = ? AND key LIKE ? ESCAPE '\\' "
            "ORDER BY key LIMIT ?",
            (kind, _like(prefix), MAX_RECORDS),
        )
        return [_record(kind, *row) for row in rows]

    def put(self, kind: str, key: str, value: dict[str, Any], version: int | None) -> Record:
        text = json.dumps(value, separators=(",", ":"))
        at = now_us()
        with self._db.write() as w:
            row = w.execute("SELECT version FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            current = int(row[0]) if row else 0
            if version is not None and version != current:
                raise Conflict(f"{kind} {key!r} is at version {current}, not {version}")
            w.execute(
                "INSERT OR REPLACE INTO records (kind, key, version, updated_at, value) VALUES (?, ?, ?, ?, ?)",
                (kind, key, current + 1, at, text),
            )
        return Record(kind, key, json.loads(text), current + 1, at)

    def delete(self, kind: str, key: str, version: int | None) -> bool:
        with self._db.write() as w:
            row = w.execute("SELECT version FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            if row is None:
                if version:
                    raise Conflict(f"{kind} {key!r} is gone")
                return False
            if version is not None and version != int(row[0]):
                raise Conflict(f"{kind} {key!r} is at version {row[0]}, not {version}")
            w.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))
        return True

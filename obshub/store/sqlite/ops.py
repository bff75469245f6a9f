"""Upkeep of the SQLite store: short retention transactions, space given back to the file
system, and the query planner's statistics. The maintenance job runs it (`SqliteStore.maintain`
-> `Maintenance.maintain`, from obshub/jobs/scheduler.py); statistics are also made at `open`
when a big store has none.

Numbers measured on a copy of the 5M-event bench store (bench/lookup.py), 2 shared cores:
- deleting a row costs ~100 us (its FTS5 entry ~60 us, ten indexes ~20 us, the row ~1 us), so
  the 5,000-row transactions of before held the write lock ~0.5 s; ingest waited that long;
- a full ANALYZE reads every index: 5.5 s; with `analysis_limit` 1,000: 0.6 s. Without any
  statistics the planner walks the time index for `rowid IN (... UNION ALL ...)`; with them it
  seeks the rowids.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from obshub.errors import StoreUnavailable
from obshub.store.base import Project
from obshub.store.sqlite.db import Db, translate

__all__ = [
    "DELETE_CHUNK",
    "ChunkSizer",
    "Maintenance",
    "Retention",
    "Upkeep",
    "analyze_if_due",
    "optimize",
    "reclaimable",
    "vacuum_step",
]

# One retention transaction: the oldest events of a project, `LIMIT` rows at a time.
DELETE_CHUNK = "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE project_id = ? AND ts < ? LIMIT ?)"

LOCK_BOUND_S = 0.050  # what one upkeep transaction may hold the write lock, at most
# Aimed at: the next chunk is sized on the last one's rate, and the rate varies a lot (FTS5
# merge work, I/O of a shared disk): on the 5M bench store a chunk's p99 is ~4x its median.
_TARGET_S = 0.010
# The writer's automatic checkpoint while upkeep runs (pages of WAL). At SQLite's 1,000 it fired
# inside ~1 in 10 retention COMMITs, i.e. inside the write lock (+20-30 ms each); upkeep
# checkpoints from a connection of its own instead, which runs beside the writer.
UPKEEP_AUTOCHECKPOINT = 10_000
DEFAULT_AUTOCHECKPOINT = 1_000
ANALYZE_MIN_ROWS = 100_000  # below this the planner's built-in guesses (made for big tables) do fine
ANALYZE_LIMIT = 1_000  # rows read per index by ANALYZE: bounded time at any size
_RESERVE_DIV = 64  # free pages kept for reuse: 1/64 of the file (35 MB at 2.2 GB), so hourly
# retention does not shrink a file that the next hour's ingest grows again


@dataclass
class ChunkSizer:
    """Rows (or pages) per transaction, learnt from the last one so a transaction holds the
    write lock about `_TARGET_S`. The first chunk is small: its cost is unknown."""

    rows: int = 200
    low: int = 20
    high: int = 20_000

    def learn(self, done: int, seconds: float) -> None:
        if done <= 0:
            return
        per_row = max(seconds, 1e-6) / done
        self.rows = max(self.low, min(self.high, round(_TARGET_S / per_row)))


@dataclass
class Upkeep:
    """What the store remembers between maintenance runs: the learnt chunk sizes."""

    chunk: ChunkSizer = field(default_factory=ChunkSizer)  # retention deletes (rows)
    vacuum: ChunkSizer = field(default_factory=lambda: ChunkSizer(rows=500, low=50, high=100_000))  # pages


@dataclass
class Retention:
    """One retention run: rows deleted, and how long each transaction held the write lock."""

    deleted: int = 0
    held_s: list[float] = field(default_factory=list)

    def add(self, rows: int, held_s: float) -> None:
        self.deleted += rows
        self.held_s.append(held_s)

    def report(self) -> dict[str, float | int]:
        """What the maintenance job logs: rows, transactions, lock held (median, p99, longest; ms)."""
        held = sorted(self.held_s) or [0.0]
        ms = [round(held[min(len(held) - 1, int(q * len(held)))] * 1000, 1) for q in (0.5, 0.99)]
        return {
            "deleted": self.deleted,
            "transactions": len(self.held_s),
            "lock_ms_median": ms[0],
            "lock_ms_p99": ms[1],
            "lock_ms_max": round(held[-1] * 1000, 1),
        }


def _events_rows(conn: sqlite3.Connection) -> int:
    """About how many events are stored, in O(log n): the span of rowids (retention deletes
    the oldest, so the span stays close to the count)."""
    # Two subqueries: SQLite seeks a lone min() or max(), but scans the table for both at once.
    lo, hi = conn.execute("SELECT (SELECT min(rowid) FROM events), (SELECT max(rowid) FROM events)").fetchone()
    return 0 if lo is None else int(hi) - int(lo) + 1


def _analyzed_rows(conn: sqlite3.Connection) -> int | None:
    """The events row count the statistics were made with, None without statistics."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        return None
    row = conn.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'events' AND idx = 'ix_events_ts'").fetchone()
    return int(str(row[0]).split()[0]) if row else None


def analyze_if_due(conn: sqlite3.Connection) -> bool:
    """ANALYZE (bounded by `analysis_limit`) when the events table is big enough to matter
    and has no statistics, or has grown or shrunk 4x since they were made. Small stores keep
    the planner's defaults: statistics of a few rows would steer it wrong once the store grew.
    Returns whether it ran."""
    rows = _events_rows(conn)
    if rows < ANALYZE_MIN_ROWS:
        return False
    then = _analyzed_rows(conn)
    if then is not None and then / 4 <= rows <= then * 4:
        return False
    conn.execute(f"PRAGMA analysis_limit = {ANALYZE_LIMIT}")
    conn.execute("ANALYZE")
    return True


def optimize(conn: sqlite3.Connection) -> None:
    """PRAGMA optimize: SQLite re-analyzes the tables this connection used whose size changed
    a lot. Only once statistics exist (see analyze_if_due for why not before)."""
    if _analyzed_rows(conn) is not None:
        conn.execute(f"PRAGMA analysis_limit = {ANALYZE_LIMIT}")
        conn.execute("PRAGMA optimize")


def vacuum_step(conn: sqlite3.Connection, pages: int) -> int:
    """Give up to `pages` free pages (beyond the reserve) back to the file system; returns how
    many went. One page per statement: `PRAGMA incremental_vacuum(N)` frees one page per step,
    and sqlite3 steps a statement without result columns only once (~30 us a page at 5M events)."""
    n = min(reclaimable(conn), pages)
    for _ in range(n):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return n


def reclaimable(conn: sqlite3.Connection) -> int:
    """Free pages that `PRAGMA incremental_vacuum` may give back now: those beyond the reserve;
    0 when the store has no incremental auto_vacuum (made before it, see docs/configuration.md)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return 0
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return max(0, free - pages // _RESERVE_DIV)


class Maintenance:
    """Runs the upkeep on a store's connections, remembering the learnt chunk sizes (`Upkeep`)."""

    def __init__(self, db: Db, projects: Callable[[], list[Project]]) -> None:
        self._db = db
        self._projects = projects  # retention deletes per project: (project_id, ts) is the index
        self._upkeep = Upkeep()

    def delete_before(self, cutoff: int) -> Retention:
        with self._checkpoints() as checkpoint:
            return self._delete_chunks(cutoff, checkpoint)

    def _delete_chunks(self, cutoff: int, checkpoint: Callable[[], None]) -> Retention:
        """Delete in transactions sized to hold the write lock ~10 ms (p99 under 50 ms): a row
        costs 20-100 us to delete at 5M events (its FTS entry, ten indexes whose pages it
        dirties), so the fixed 5,000-row chunks of before held ingest off for 0.3-0.9 s. After
        each chunk the WAL is checkpointed (outside the lock) and the writer left to ingest for
        as long as the chunk took."""
        out = Retention()
        for p in self._projects():
            while True:
                rows = self._upkeep.chunk.rows
                held: list[float] = []
                with self._db.write(held) as w:
                    n = w.execute(DELETE_CHUNK, (p.id, cutoff, rows)).rowcount
                out.add(n, held[0])
                self._upkeep.chunk.learn(n, held[0])
                if n < rows:
                    break
                checkpoint()
                time.sleep(held[0])
        return out

    @contextmanager
    def _checkpoints(self) -> Iterator[Callable[[], None]]:
        """For upkeep: PASSIVE checkpoints from a connection of its own, while the writer's
        automatic checkpoint (which runs inside its COMMIT, under the lock) is held off."""
        db = self._db
        try:
            ck = db.connect(cache_kib=1024)  # a checkpoint copies pages; it needs no cache
        except sqlite3.Error as e:
            raise translate(e) from None
        try:
            with db.lock:
                if db.writer is None:
                    raise StoreUnavailable("store is not open")
                db.writer.execute(f"PRAGMA wal_autocheckpoint = {UPKEEP_AUTOCHECKPOINT}")
        except BaseException as e:
            ck.close()
            if isinstance(e, sqlite3.Error):
                raise translate(e) from None
            raise

        def checkpoint() -> None:
            try:
                ck.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as e:
                raise translate(e) from None

        try:
            yield checkpoint
        finally:
            with db.lock:
                if db.writer is not None:
                    db.writer.execute(f"PRAGMA wal_autocheckpoint = {DEFAULT_AUTOCHECKPOINT}")
            ck.close()

    def maintain(self, now_us: int, retention_us: int) -> dict[str, Any]:
        """Retention (`retention_us` <= 0 keeps everything), then the freed pages back to the file
        system, then the planner's statistics refreshed when due."""
        with self._checkpoints() as checkpoint:
            out = self._delete_chunks(now_us - retention_us, checkpoint) if retention_us > 0 else Retention()
            reclaim = self._reclaim(checkpoint)
        with self._db.write() as w:
            analyzed = analyze_if_due(w)
            optimize(w)
        return {
            **out.report(),
            "reclaimed_pages": reclaim.deleted,
            "reclaim_lock_ms_max": reclaim.report()["lock_ms_max"],
            "analyzed": analyzed,
        }

    def _reclaim(self, checkpoint: Callable[[], None]) -> Retention:
        """Free pages back to the file system in steps sized like the deletes, down to a reserve
        that the next hours of ingest reuse anyway (`reclaimable`)."""
        out = Retention()
        while True:
            held: list[float] = []
            with self._db.write(held) as w:
                n = vacuum_step(w, self._upkeep.vacuum.rows)
            if n <= 0:
                return out
            out.add(n, held[0])
            self._upkeep.vacuum.learn(n, held[0])
            checkpoint()
            time.sleep(held[0])

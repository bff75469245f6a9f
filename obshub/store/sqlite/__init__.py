"""Embedded store: one SQLite file, zero setup, for a single hub.

Why it is shaped this way:
- WAL + `synchronous=FULL`: readers never block the writer, and a COMMIT returns only after the
  WAL is fsynced, so the 2xx the ingest sends after `write_events` means "on disk" (principle 1).
  One fsync per batch, not per event: a 1,000-line batch costs one ~1-5 ms fsync, and
  concurrent batches share one transaction and one fsync (group commit, `coalesce.py`).
- One writer connection behind a lock (SQLite allows one writer anyway); readers take a
  connection from a small pool (sqlite_pool.py), so searches never wait for ingest and the
  number of page caches (hence the hub's memory) is bounded whatever the threads do.
- Aggregations read bounded sets: facets the newest 10,000 matches, the errors list a covering
  index over error occurrences in a range, analytics covering indexes of `kind=event` rows.
  Upkeep (retention in short transactions, space reclaim, planner statistics) is in
  sqlite_ops.py.
- `INSERT OR IGNORE` on UNIQUE(project_id, id): a replayed batch stores nothing twice. The FTS
  rows of a batch are added by one `INSERT ... SELECT` over the batch's new rowid range, in the
  same transaction: measured 2x faster than a per-row AFTER INSERT trigger (27k vs 14k rows/s,
  bench schema, 2 cores), and ignored duplicates are outside that range by construction.
- Partial indexes per correlation key (WHERE key IS NOT NULL): most log lines lack most keys,
  so the indexes stay small and cheap to maintain.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from obshub.errors import ConfigError, Conflict, NotFound, StoreOverloaded, StoreUnavailable
from obshub.events import now_us
from obshub.store.base import (FACET_SAMPLE, GroupRecord, GroupStats, NewToken, Project, Sampled,
                               SearchRequest, TokenRecord, TokenScope, WriteResult)
from obshub.store.coalesce import Coalescer
from obshub.store.querylang import CORE_FIELDS, Node, attr_key
from obshub.store.sqlite import aggs as sqlite_aggs
from obshub.store.sqlite import ops as sqlite_ops
from obshub.store.sqlite.compile import INDEXED_KEYS, Rare, Where, compile_where
from obshub.store.sqlite.pool import ReaderPool

__all__ = ["SqliteStore"]

_COLS = ("id", "ts", "received_at", "kind", "level", "message", "service", "host", "env",
         "release", "logger", "request_id", "trace_id", "span_id", "user_id", "session_id",
         "name", "error", "group_id", "attrs")
_SELECT = ", ".join(f"e.{c}" for c in _COLS)
# Rows go in as multi-row INSERTs (`VALUES (...), (...), ...`): one statement step for up to
# 1024 rows. Why: sqlite3 releases the GIL around every step, and inside the hub each
# re-acquisition waits for the ingest threads that parse the next batch (up to the 5 ms switch
# interval). With one step per row the insert ran 3.6x slower in the hub than alone and the
# writer could not overlap with parsing; one step per batch lets it (hub, 4 agents: 26.6k ->
# 33.5k events/s). Compiling a 1000-row statement costs ~12 ms, so only power-of-two shapes
# exist (11 at most, compiled once): a chunk is padded to its shape by repeating its last row,
# which INSERT OR IGNORE drops as a duplicate without counting it.
_MAX_CHUNK = 1024
_ROW_VALUES = f"({', '.join('?' * (len(_COLS) + 1))})"


@functools.lru_cache(maxsize=16)
def _insert_rows(n: int) -> str:
    return f"INSERT OR IGNORE INTO events (project_id, {', '.join(_COLS)}) VALUES {', '.join([_ROW_VALUES] * n)}"


def _chunk_cap(conn: sqlite3.Connection) -> int:
    """The largest power of two <= _MAX_CHUNK whose parameters fit this SQLite build
    (32,766 variables by default since 3.32; 999 before)."""
    fits = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // (len(_COLS) + 1))
    return 1 << (min(fits, _MAX_CHUNK).bit_length() - 1)


def _insert(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """INSERT OR IGNORE every row; returns how many were new."""
    accepted, cap = 0, _chunk_cap(conn)
    for k in range(0, len(rows), cap):
        chunk = list(rows[k:k + cap])
        shape = 1 << (len(chunk) - 1).bit_length()  # the smallest power of two >= len(chunk)
        chunk += [chunk[-1]] * (shape - len(chunk))
        # rowcount = rows inserted: an ignored duplicate (or padding) adds 0
        accepted += conn.execute(_insert_rows(shape), list(itertools.chain.from_iterable(chunk))).rowcount
    return accepted


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS projects (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, public_key TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tokens (
        hash TEXT PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
        scope TEXT NOT NULL, created_at INTEGER NOT NULL, label TEXT NOT NULL DEFAULT '',
        revoked_at INTEGER) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS events (
        rowid INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, id TEXT NOT NULL,
        ts INTEGER NOT NULL, received_at INTEGER NOT NULL, kind TEXT NOT NULL,
        level TEXT NOT NULL, message TEXT, service TEXT, host TEXT, env TEXT, release TEXT,
        logger TEXT, request_id TEXT, trace_id TEXT, span_id TEXT, user_id TEXT,
        session_id TEXT, name TEXT, error TEXT, group_id TEXT, attrs TEXT,
        UNIQUE (project_id, id))""",
    """CREATE TABLE IF NOT EXISTS error_groups (
        project_id INTEGER NOT NULL, id TEXT NOT NULL, title TEXT NOT NULL, type TEXT, culprit TEXT,
        level TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'unresolved',
        first_seen INTEGER NOT NULL, resolved_at INTEGER, regressed_at INTEGER, merged_into TEXT,
        PRIMARY KEY (project_id, id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS ix_events_ts ON events (project_id, ts)",
    # `level:error` walked the time index until it had a page (1% of events are errors: ~450 ms
    # at 5M); this one starts at the level: 0.1 ms. 117 MB at 5M events (+5%).
    "CREATE INDEX IF NOT EXISTS ix_events_level ON events (project_id, level, ts)",
    # Analytics only reads kind=event rows: partial indexes stay small on a log-heavy stream.
    # Both are covering (`kind` is listed because SQLite 3.40 does not count a partial index's
    # WHERE columns as covered): by name for one event, by time for all of them.
    "CREATE INDEX IF NOT EXISTS ix_events_ev_name ON events (project_id, name, ts, user_id, kind) WHERE kind = 'event'",
    "CREATE INDEX IF NOT EXISTS ix_events_ev_ts ON events (project_id, ts, name, user_id, kind) WHERE kind = 'event'",
    # The errors list: every column its aggregation reads, for error occurrences only (1% of a
    # stream), in time order so a range reads only its own occurrences (2.8 MB at 5M).
    "CREATE INDEX IF NOT EXISTS ix_events_errors ON events (project_id, ts, group_id, user_id, host, kind) "
    "WHERE kind = 'error' AND group_id IS NOT NULL",
    *[f"CREATE INDEX IF NOT EXISTS ix_events_{k} ON events (project_id, {k}, ts) WHERE {k} IS NOT NULL"
      for k in INDEXED_KEYS],
    # The word rule of both stores (docs/api.md, "Words"; OpenSearch: mappings.py): a word is a
    # run of letters, digits and '_' (tokenchars '_' keeps mod_jk or user_id whole), anything
    # else separates; unicode61 folds case and strips accents. Changing it means rebuilding the
    # index of every existing store.
    """CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
        message, content='events', content_rowid='rowid', tokenize="unicode61 tokenchars '_'")""",
    """CREATE TRIGGER IF NOT EXISTS events_ad AFTER DELETE ON events WHEN old.message IS NOT NULL
        BEGIN INSERT INTO events_fts (events_fts, rowid, message) VALUES ('delete', old.rowid, old.message); END""",
]

# Indexes a newer schema replaced (ix_events_name: by the covering ix_events_ev_name).
_DROPPED_INDEXES = ("ix_events_name",)

# Columns added after the first release: a store made by an older hub gets them at `open`.
_ADDED_COLUMNS = {"tokens": ("label TEXT NOT NULL DEFAULT ''", "revoked_at INTEGER")}
_TOKEN_COLS = "hash, project_id, scope, label, created_at, revoked_at"

_INSERT_GROUP = ("INSERT OR IGNORE INTO error_groups (project_id, id, title, type, culprit, level, version, "
                 "first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# The groups a batch's error occurrences carry *as stored*: per group, the earliest ts and the
# newest rowid (rowids past the batch's start are occurrences this batch stored). A duplicate's
# stored copy may carry another group, or none (stored undigested, or by another grouping).
_STORED_GROUPS = ("SELECT group_id, min(ts), max(rowid) FROM events WHERE project_id = ? AND id IN ({ids}) "
                  "AND group_id IS NOT NULL GROUP BY group_id")
# A resolved group regresses when a *stored* occurrence was received after its resolution;
# judging on stored rows, not on the batch, keeps an agent's replay of an old batch from
# reopening anything.
_NEWEST_AFTER_RESOLVE = ("(SELECT max(e.received_at) FROM events e WHERE e.project_id = error_groups.project_id "
                         "AND e.group_id = error_groups.id AND e.received_at > coalesce(error_groups.resolved_at, 0))")
_REGRESS = (f"UPDATE error_groups SET state = 'unresolved', regressed_at = {_NEWEST_AFTER_RESOLVE} "
            f"WHERE project_id = ? AND id IN ({{ids}}) AND state = 'resolved' "
            f"AND {_NEWEST_AFTER_RESOLVE} IS NOT NULL")
_INDEX_TEXT = ("INSERT INTO events_fts (rowid, message) SELECT rowid, message FROM events "
               "WHERE rowid > ? AND message IS NOT NULL")
_MAX_ROWS_PER_COMMIT = 20_000  # bounds one transaction's duration (~0.5 s) and memory
_Batch = tuple[int, Sequence[dict[str, Any]], Sequence[Any]]  # (project_id, events, error groups seen)
_READERS = 4  # reader connections at most: 2 cores run 2 queries; 4 keep one slow query from blocking
_READER_CACHE_KIB = 16 * 1024  # page cache per reader connection: 4 x 16 MiB at most
_WRITER_CACHE_KIB = 32 * 1024
_READER_IDLE_S = 60.0  # a reader connection unused this long is closed (its cache freed)
# A checkpoint that resets the WAL truncates it to this size: without a limit the file stays at
# its high-water mark (160 MiB seen at 5M events) although a checkpoint emptied it. Above the
# working size: 4 MB between automatic checkpoints plus the largest commit (20,000 rows, ~12 MB).
_WAL_LIMIT_BYTES = 32 * 1024 * 1024


def _rows(project_id: int, events: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    dumps = orjson.dumps
    return [(project_id, ev["id"], ev["ts"], ev["received_at"], ev["kind"], ev["level"],
             ev["message"], ev["service"], ev["host"], ev["env"], ev["release"], ev["logger"],
             ev["request_id"], ev["trace_id"], ev["span_id"], ev["user_id"], ev["session_id"],
             ev["name"], dumps(ev["error"]).decode() if ev.get("error") else None, ev["group_id"],
             dumps(ev["attrs"]).decode() if ev.get("attrs") else None) for ev in events]


def _user_where(project_id: int, user_id: str, start: int | None, end: int | None) -> tuple[str, list[Any]]:
    clauses, params = ["e.project_id = ?", "e.user_id = ?"], [project_id, user_id]
    if start is not None:
        clauses.append("e.ts >= ?")
        params.append(start)
    if end is not None:
        clauses.append("e.ts < ?")
        params.append(end)
    return " AND ".join(clauses), params


def _translate(exc: sqlite3.Error) -> Exception:
    msg = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg):
        return StoreOverloaded(f"sqlite busy: {msg}")
    return StoreUnavailable(f"sqlite: {msg}")


class SqliteStore:
    """The `Store` protocol on one SQLite file."""

    # A word with at most this many full-text hits is searched from its hits (collect, then sort
    # by time); a commoner one by walking time windows (sqlite_query.py). At 5M events, from the
    # hits costs ~3 us a hit (random row reads: 10,000 -> 30 ms); the windows ~20 ms for a word
    # in 0.1-0.4% of the events, but more when its hits bunch in time (4,248 `TimeoutError`s:
    # 145 ms vs 15 ms from the hits). Tests lower it to run both paths.
    fts_first_max = 10_000
    window_rows = 2_048  # first time window of a common-word search (sqlite_query.py)

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        # sqlite:///abs/path.db for absolute paths, sqlite:///./rel.db for relative ones
        self.url = f"sqlite://{self.path}" if self.path.is_absolute() else f"sqlite:///./{self.path}"
        self._sync = synchronous
        self._wlock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._readers = ReaderPool(self._connect_reader, _READERS, _READER_IDLE_S, wait_s=10.0)
        self._held = threading.local()  # .conn: the pool connection of this thread's `_snapshot`
        self._closed = False
        self._committer: Coalescer[_Batch, WriteResult] | None = None
        self._upkeep = sqlite_ops.Upkeep()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        parts = urlsplit(url)
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"OBSHUB_STORE: sqlite URL must look like sqlite:///path/to/obshub.db, got {url!r}")
        if path.startswith("/./") or path.startswith("/../"):
            path = path[1:]  # sqlite:///./x.db is the relative path ./x.db
        elif path.startswith("//"):
            path = path[1:]  # sqlite:////abs/x.db (the SQLAlchemy spelling) is /abs/x.db
        if not path or path.endswith("/"):
            raise ConfigError(f"OBSHUB_STORE: sqlite URL {url!r} names no database file")
        return cls(path)

    # -- connections ---------------------------------------------------------------------------
    def _connect(self, cache_kib: int = _WRITER_CACHE_KIB) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute(f"PRAGMA synchronous = {self._sync}")
        conn.execute(f"PRAGMA cache_size = -{cache_kib}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = self._connect(_READER_CACHE_KIB)
        conn.execute("PRAGMA query_only = 1")
        return conn

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"OBSHUB_STORE: cannot create directory {self.path.parent}: {e}") from None
        try:
            w = self._connect()
            if not w.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall():
                # A new store: freed pages can be given back to the file system after retention
                # (`_reclaim`). It must be chosen before the first table; an older store converts
                # with VACUUM (docs/configuration.md).
                w.execute("PRAGMA auto_vacuum = INCREMENTAL")
            w.execute("PRAGMA journal_mode = WAL")
            with self._tx(w):
                for stmt in _SCHEMA:
                    w.execute(stmt)
                for name in _DROPPED_INDEXES:
                    w.execute(f"DROP INDEX IF EXISTS {name}")
                for table, columns in _ADDED_COLUMNS.items():
                    have = {r[1] for r in w.execute(f"PRAGMA table_info({table})")}
                    for col in columns:
                        if col.split()[0] not in have:
                            w.execute(f"ALTER TABLE {table} ADD COLUMN {col}")
                w.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1')")
            sqlite_ops.analyze_if_due(w)  # a store that grew without statistics gets them now
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open sqlite database {self.path}: {e}") from None
        self._writer = w
        self._closed = False
        self._readers.reopen()
        # Concurrent writers share one transaction and one fsync (coalesce.py).
        self._committer = Coalescer("obshub-sqlite-writer", self._commit, lambda b: len(b[1]), _MAX_ROWS_PER_COMMIT)

    def close(self) -> None:
        self._closed = True
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        with self._wlock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self._readers.close()

    @property
    def reader_connections(self) -> int:
        """Reader connections open now (at most 4): what bounds the page caches' memory."""
        return self._readers.open_connections

    @contextmanager
    def _tx(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, I/O error) can leave the transaction open; without
            # this the writer connection would refuse every later BEGIN.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _write(self, held: list[float] | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction; `held` (if given) gets how long it held the write lock, in s,
        BEGIN to COMMIT (what every other writer waited at most meanwhile)."""
        with self._wlock:
            if self._writer is None:
                raise StoreUnavailable("store is not open")
            started = time.perf_counter()
            try:
                with self._tx(self._writer):
                    yield self._writer
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as e:
                raise _translate(e) from None
            finally:
                if held is not None:
                    held.append(time.perf_counter() - started)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        try:
            held: sqlite3.Connection | None = getattr(self._held, "conn", None)
            if held is not None:  # inside `_snapshot`: its read transaction
                return held.execute(sql, params).fetchall()
            with self._readers.connection() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise _translate(e) from None

    def ping(self) -> None:
        self._read("SELECT 1")
        if self._writer is None:
            raise StoreUnavailable("store is not open")

    def exists(self) -> bool:
        return self.path.is_file()

    # -- projects and tokens -------------------------------------------------------------------
    def is_empty(self) -> bool:
        return not self._read("SELECT 1 FROM projects LIMIT 1")

    def create_project(self, name: str, public_key: str, token_hashes: Sequence[NewToken]) -> Project:
        now = now_us()
        try:
            with self._write() as w:
                cur = w.execute("INSERT INTO projects (name, public_key, created_at) VALUES (?, ?, ?)",
                                (name, public_key, now))
                pid = int(cur.lastrowid or 0)
                w.executemany("INSERT INTO tokens (hash, project_id, scope, label, created_at) VALUES (?, ?, ?, ?, ?)",
                              [(t[1], pid, t[0], t[2] if len(t) > 2 else "", now) for t in token_hashes])
        except sqlite3.IntegrityError:
            raise Conflict(f"project {name!r} already exists") from None
        return Project(pid, name, public_key, now)

    def add_token(self, project_id: int, scope: TokenScope, token_hash: str, label: str = "") -> None:
        with self._write() as w:
            w.execute("INSERT OR IGNORE INTO tokens (hash, project_id, scope, label, created_at) VALUES (?, ?, ?, ?, ?)",
                      (token_hash, project_id, scope, label, now_us()))

    def _projects(self, where: str, params: Sequence[Any]) -> list[Project]:
        rows = self._read(f"SELECT id, name, public_key, created_at FROM projects {where}", params)
        return [Project(*r) for r in rows]

    def get_project(self, name: str) -> Project | None:
        found = self._projects("WHERE name = ?", (name,))
        return found[0] if found else None

    def get_project_by_id(self, project_id: int) -> Project | None:
        found = self._projects("WHERE id = ?", (project_id,))
        return found[0] if found else None

    def list_projects(self) -> list[Project]:
        return self._projects("ORDER BY id", ())

    def find_token(self, token_hash: str) -> tuple[Project, TokenScope] | None:
        rows = self._read(
            "SELECT p.id, p.name, p.public_key, p.created_at, t.scope FROM tokens t "
            "JOIN projects p ON p.id = t.project_id WHERE t.hash = ? AND t.revoked_at IS NULL", (token_hash,))
        if not rows:
            return None
        r = rows[0]
        return Project(r[0], r[1], r[2], r[3]), r[4]

    def list_tokens(self, project_id: int | None = None) -> list[TokenRecord]:
        where, params = ("WHERE project_id = ?", (project_id,)) if project_id is not None else ("", ())
        rows = self._read(f"SELECT {_TOKEN_COLS} FROM tokens {where} ORDER BY created_at, hash", params)
        return [TokenRecord(*r) for r in rows]

    def revoke_token(self, token_hash: str) -> TokenRecord | None:
        with self._write() as w:
            w.execute("UPDATE tokens SET revoked_at = ? WHERE hash = ? AND revoked_at IS NULL", (now_us(), token_hash))
            row = w.execute(f"SELECT {_TOKEN_COLS} FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
        return TokenRecord(*row) if row else None

    # -- events --------------------------------------------------------------------------------
    def write_events(self, project_id: int, events: Sequence[dict[str, Any]],
                     groups: Sequence[Any] = ()) -> WriteResult:
        return self.submit_events(project_id, events, groups).result()

    def submit_events(self, project_id: int, events: Sequence[dict[str, Any]],
                      groups: Sequence[Any] = ()) -> Future[WriteResult]:
        if self._committer is None or self._closed:
            raise StoreUnavailable("store is not open")
        return self._committer.submit((project_id, events, groups))

    def _commit(self, batches: list[_Batch]) -> list[WriteResult]:
        """One transaction for every batch waiting (see coalesce.py)."""
        rows = [_rows(pid, events) for pid, events, _ in batches]
        with self._write() as conn:
            last = before = conn.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
            accepted = []
            for (pid, events, groups), r in zip(batches, rows):
                n = self._write_batch(conn, pid, events, r, groups, before)
                accepted.append(n)
                before += n  # new rows take max(rowid) + 1, one after the other: this batch's are (before, before + n]
            conn.execute(_INDEX_TEXT, (last,))
        return [WriteResult(accepted=n, duplicates=len(r) - n) for n, r in zip(accepted, rows)]

    @staticmethod
    def _write_batch(conn: sqlite3.Connection, project_id: int, events: Sequence[dict[str, Any]],
                     rows: list[tuple[Any, ...]], groups: Sequence[Any], before: int) -> int:
        """Insert one batch's rows; then, in the same transaction (so no stored occurrence is
        ever without its group), record the groups of the occurrences actually stored: a
        replayed batch whose events are stored already, under no group or another one, creates
        and reopens nothing. `before`: the largest rowid before this batch."""
        accepted = _insert(conn, rows)
        if not groups:
            return accepted
        seen = {g.id: g for g in groups}
        first: dict[str, int] = {}  # group id -> earliest ts of its stored occurrences in this batch
        fresh: set[str] = set()  # groups with an occurrence this batch stored
        if accepted == len(rows):  # every event is new (the common case): no lookup
            for ev in events:
                gid = ev.get("group_id")
                if isinstance(gid, str) and gid in seen:
                    first[gid] = min(first.get(gid, ev["ts"]), ev["ts"])
            fresh.update(first)
        else:  # duplicates: the groups their stored copies carry (maybe none, maybe another)
            ids = [ev["id"] for ev in events if ev.get("group_id") in seen]
            step = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 1)
            for k in range(0, len(ids), step):
                chunk = ids[k:k + step]
                for gid, ts, newest in conn.execute(_STORED_GROUPS.format(ids=",".join("?" * len(chunk))),
                                                    (project_id, *chunk)):
                    if gid in seen:
                        first[gid] = min(first.get(gid, ts), ts)
                        if newest > before:
                            fresh.add(gid)
        if first:
            conn.executemany(_INSERT_GROUP, [(project_id, gid, seen[gid].title, seen[gid].type, seen[gid].culprit,
                                              seen[gid].level, seen[gid].version, ts) for gid, ts in first.items()])
        if fresh:  # regression only by occurrences this batch stored; touches only resolved groups
            conn.execute(_REGRESS.format(ids=",".join("?" * len(fresh))), (project_id, *fresh))
        return accepted

    def _row(self, r: tuple[Any, ...]) -> dict[str, Any]:
        ev = dict(zip(_COLS, r))
        ev["error"] = orjson.loads(r[17]) if r[17] else None
        ev["attrs"] = orjson.loads(r[19]) if r[19] else {}
        return ev

    def _rare(self) -> Rare:
        """Which words start from the full-text index: a capped count of their hits (~1 ms at
        5M events) <= `fts_first_max`; memoized for one read."""
        seen: dict[str, bool] = {}

        def rare(match: str) -> bool:
            if match not in seen:
                n = self._read("SELECT count(*) FROM (SELECT rowid FROM events_fts WHERE events_fts MATCH ? LIMIT ?)",
                               (match, self.fts_first_max + 1))[0][0]
                seen[match] = n <= self.fts_first_max
            return seen[match]
        return rare

    def _compile(self, project_id: int, query: Node | None, start: int | None, end: int | None,
                 rare: Rare) -> Where:
        """The WHERE of a read, with a common word's full-text set bounded to the rowids the
        driver (an id lookup, a rare word) can yield. Run it in `_snapshot` with the read that
        uses it: a row stored in between would be outside the bound."""
        w = compile_where(project_id, query, start, end, rare)
        if w.fts and w.driver_span is not None:
            lo, hi = self._read(*w.driver_span)[0]
            w = compile_where(project_id, query, start, end, rare, (lo, hi) if lo is not None else (1, 0))
        return w

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """The reads inside see one snapshot (one WAL read transaction): this thread holds one
        pool connection for the block, and `_read` uses it."""
        if getattr(self._held, "conn", None) is not None:  # nested: already in one
            yield
            return
        with self._readers.connection() as conn:
            try:
                conn.execute("BEGIN")
            except sqlite3.Error as e:
                raise _translate(e) from None
            self._held.conn = conn
            try:
                yield
            finally:
                self._held.conn = None
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _where(self, project_id: int, query: Node | None, start: int | None, end: int | None) -> tuple[str, list[Any]]:
        """The WHERE of a read outside `_snapshot` (facets, error stats, analytics): ids and rare
        words still drive it by index; a common word's set is not bounded (no span read)."""
        w = compile_where(project_id, query, start, end, self._rare())
        return w.sql, w.params

    def search_sql(self, project_id: int, req: SearchRequest) -> Iterator[tuple[str, list[Any]]]:
        """The SELECTs `search` runs, in order; it stops at the first that fills the page.

        One, unless the query walks by time testing a common word: then each SELECT reads a
        window of the newest `window_rows` (x8 each time) rows of the range, with the word's
        full-text set bounded to the window's rowids (sqlite_query.py); a page that fills within
        a window is the page of the whole range, since a window holds the newest rows."""
        rare = self._rare()
        w = self._compile(project_id, req.query, req.start, req.end, rare)
        if w.drive != "time" or not w.fts:
            yield self._select(w, req)
            return
        lo, hi = req.start, req.end  # [lo, hi): the range left after the cursor
        if req.after is not None:
            if req.ascending:
                lo = req.after[0] if lo is None else max(lo, req.after[0])
            else:
                hi = req.after[0] + 1 if hi is None else min(hi, req.after[0] + 1)
        rng, rp = "project_id = ?", [project_id]
        if lo is not None:
            rng += " AND ts >= ?"
            rp.append(lo)
        if hi is not None:
            rng += " AND ts < ?"
            rp.append(hi)
        order = "ASC" if req.ascending else "DESC"
        k = self.window_rows
        while True:
            edge = self._read(f"SELECT ts FROM events WHERE {rng} ORDER BY ts {order} LIMIT 1 OFFSET ?", [*rp, k - 1])
            wlo, whi = lo, hi
            if edge:  # the window: every row from the range's newest (oldest) to the k-th one
                if req.ascending:
                    whi = edge[0][0] + 1
                else:
                    wlo = edge[0][0]
            span = self._read(f"SELECT min(rowid), max(rowid) FROM events WHERE project_id = ?"
                              f"{' AND ts >= ?' if wlo is not None else ''}{' AND ts < ?' if whi is not None else ''}",
                              [project_id, *(v for v in (wlo, whi) if v is not None)])[0]
            if span[0] is None:
                return  # no rows in the range
            w = compile_where(project_id, req.query, wlo, whi, rare, span)
            yield self._select(w, req)
            if not edge:
                return
            k *= 8

    @staticmethod
    def _select(w: Where, req: SearchRequest) -> tuple[str, list[Any]]:
        where, params = w.sql, list(w.params)
        if req.after is not None:
            where += " AND (e.ts, e.id) > (?, ?)" if req.ascending else " AND (e.ts, e.id) < (?, ?)"
            params.extend(req.after)
        order = "ASC" if req.ascending else "DESC"
        return (f"SELECT {_SELECT} FROM events e WHERE {where} ORDER BY e.ts {order}, e.id {order} LIMIT ?",
                [*params, req.limit])

    def search(self, project_id: int, req: SearchRequest) -> list[dict[str, Any]]:
        rows: list[tuple[Any, ...]] = []
        with self._snapshot():  # a window's bounds and its rows must agree
            for sql, params in self.search_sql(project_id, req):
                rows = self._read(sql, params)
                if len(rows) >= req.limit:
                    break
        return [self._row(r) for r in rows]

    def count(self, project_id: int, query: Node | None, start: int | None, end: int | None) -> int:
        with self._snapshot():
            w = self._compile(project_id, query, start, end, self._rare())
            return int(self._read(f"SELECT count(*) FROM events e WHERE {w.sql}", w.params)[0][0])

    # -- user timeline: `INDEXED BY` pins the plan. With a time range SQLite otherwise picks the
    # time index (project_id, ts) and walks every event of the range until it finds the user's
    # (5M store, 7-day range: seconds); from the user index a page is well under a millisecond.
    def user_events(self, project_id: int, user_id: str, start: int | None, end: int | None, limit: int,
                    before: tuple[int, str] | None = None) -> list[dict[str, Any]]:
        where, params = _user_where(project_id, user_id, start, end)
        if before is not None:
            where += " AND (e.ts, e.id) < (?, ?)"
            params.extend(before)
        rows = self._read(f"SELECT {_SELECT} FROM events e INDEXED BY ix_events_user_id WHERE {where} "
                          "ORDER BY e.ts DESC, e.id DESC LIMIT ?", [*params, limit])
        return [self._row(r) for r in rows]

    def request_events(self, project_id: int, request_ids: Sequence[str], limit: int) -> dict[str, list[dict[str, Any]]]:
        # One statement per id, compiled once (the sqlite3 statement cache): 51 requests of the
        # heaviest bench user (5M events) in ~2 ms; `request_id IN (...)` would need a sort of
        # every match to cap each request.
        sql = (f"SELECT {_SELECT} FROM events e INDEXED BY ix_events_request_id "
               "WHERE e.project_id = ? AND e.request_id = ? ORDER BY e.ts, e.id LIMIT ?")
        out: dict[str, list[dict[str, Any]]] = {}
        for rid in dict.fromkeys(request_ids):
            rows = self._read(sql, (project_id, rid, limit))
            if rows:
                out[rid] = [self._row(r) for r in rows]
        return out

    def count_user_requests(self, project_id: int, user_id: str, start: int | None, end: int | None,
                            cap: int) -> int:
        where, params = _user_where(project_id, user_id, start, end)
        return int(self._read(f"SELECT count(*) FROM (SELECT DISTINCT e.request_id FROM events e "
                              f"INDEXED BY ix_events_user_id WHERE {where} AND e.request_id IS NOT NULL "
                              "LIMIT ?)", [*params, cap + 1])[0][0])

    def facets(self, project_id: int, query: Node | None, start: int | None, end: int | None,
               fields: Sequence[str], limit: int, sample: int = FACET_SAMPLE) -> Sampled[dict[str, list[tuple[str, int]]]]:
        for f in fields:
            if f not in CORE_FIELDS or f in ("ts", "message", "id"):
                raise ValueError(f"cannot facet on {f!r}")
        if not 1 <= sample <= FACET_SAMPLE:
            raise ValueError(f"sample: must be between 1 and {FACET_SAMPLE}")
        rows = self._read(*sqlite_aggs.facets(*self._where(project_id, query, start, end), fields, sample))
        matched = rows[0][2]
        values: dict[str, list[tuple[str, int]]] = {f: [] for f in fields}
        for i, v, n in rows[1:]:
            values[fields[i]].append((v, n))
        for vs in values.values():
            vs.sort(key=lambda vn: (-vn[1], vn[0]))
            del vs[max(0, limit):]
        return Sampled(values, min(matched, sample), matched > sample)

    # -- analytics -------------------------------------------------------------------------------
    def _ev_where(self, project_id: int, name: str | None, start: int | None, end: int | None) -> tuple[str, list[Any]]:
        where, params = self._where(project_id, None, start, end)
        where += " AND e.kind = 'event'"  # literally: the analytics indexes are partial on it
        if name is not None:
            where += " AND e.name = ?"
            params.append(name)
        return where, params

    def event_names(self, project_id: int, start: int | None, end: int | None, limit: int) -> list[tuple[str, int]]:
        where, params = self._ev_where(project_id, None, start, end)
        rows = self._read(*sqlite_aggs.event_names(where, params, start is not None or end is not None, limit))
        return [(r[0], r[1]) for r in rows]

    def event_properties(self, project_id: int, name: str, start: int | None, end: int | None,
                         sample: int = FACET_SAMPLE) -> Sampled[list[str]]:
        where, params = self._ev_where(project_id, name, start, end)
        rows = self._read(*sqlite_aggs.newest_events(where, params, "e.attrs", sample,
                                                     "SELECT DISTINCT j.key, NULL, NULL FROM t, json_each(t.p) j "
                                                     "WHERE t.p IS NOT NULL"))
        matched = rows[0][2]
        return Sampled(sorted(r[0] for r in rows[1:]), min(matched, sample), matched > sample)

    def property_values(self, project_id: int, name: str, prop: str, start: int | None, end: int | None,
                        limit: int, sample: int = FACET_SAMPLE) -> Sampled[list[tuple[Any, int]]]:
        where, params = self._ev_where(project_id, name, start, end)
        key = attr_key(prop) if prop.startswith("attrs.") else (None if prop in CORE_FIELDS else prop)
        if key is None:
            col, expr = f"e.{prop}", "t.p"
        else:
            if '"' in key or "'" in key:
                raise ValueError(f"property name {prop!r} contains quotes")
            col, expr = "e.attrs", f"json_extract(t.p, '$.\"{key}\"')"
        # The newest `sample` occurrences, like facets: a frequent event's values read 10,000
        # rows, not every occurrence ever (130k page views a week at 5M events: 356 ms before).
        rows = self._read(*sqlite_aggs.newest_events(where, params, col, sample,
                                                     f"SELECT {expr} AS v, count(*) AS n, NULL FROM t "
                                                     "WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT ?",
                                                     [limit]))
        matched = rows[0][2]
        return Sampled([(r[0], r[1]) for r in rows[1:]], min(matched, sample), matched > sample)

    def event_series(self, project_id: int, name: str | None, interval_us: int, start: int, end: int,
                     unique: bool) -> list[tuple[int, int]]:
        where, params = self._ev_where(project_id, name, start, end)
        rows = self._read(*sqlite_aggs.event_series(where, params, name is not None, interval_us, unique))
        return [(r[0], r[1]) for r in rows if r[1]]

    # -- error groups ----------------------------------------------------------------------------
    def get_groups(self, project_id: int, ids: Sequence[str] | None = None) -> list[GroupRecord]:
        sql = ("SELECT id, title, type, culprit, level, version, state, first_seen, resolved_at, regressed_at, "
               "merged_into FROM error_groups WHERE project_id = ?")
        params: list[Any] = [project_id]
        if ids is not None:
            if not ids:
                return []
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        return [GroupRecord(*r) for r in self._read(sql, params)]

    def group_stats(self, project_id: int, query: Node | None, start: int | None, end: int | None,
                    ids: Sequence[str] | None = None) -> dict[str, GroupStats]:
        if ids is not None and not ids:
            return {}
        rows = self._read(*sqlite_aggs.group_stats(*self._where(project_id, query, start, end), ids))
        return {r[0]: GroupStats(r[1], r[2], sorted((r[3] or "").split(",")) if r[3] else [], r[4], r[5])
                for r in rows}

    def group_series(self, project_id: int, start: int, end: int, interval_us: int) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        for gid, t, n in self._read(*sqlite_aggs.group_series(*self._where(project_id, None, start, end), interval_us)):
            out.setdefault(gid, []).append((t, n))
        return out

    def update_group(self, project_id: int, group_id: str, state: str | None = None,
                     resolved_at: int | None = None, merged_into: str | None = None) -> GroupRecord:
        sets, params = [], []
        if state is not None:
            sets += ["state = ?", "resolved_at = ?"]
            params += [state, resolved_at]
        if merged_into is not None:
            sets.append("merged_into = ?")
            params.append(merged_into)
        with self._write() as w:
            if sets:
                w.execute(f"UPDATE error_groups SET {', '.join(sets)} WHERE project_id = ? AND id = ?",
                          [*params, project_id, group_id])
        found = self.get_groups(project_id, [group_id])
        if not found:
            raise NotFound(f"no error group {group_id!r}")
        return found[0]

    # -- lifecycle -------------------------------------------------------------------------------
    def delete_before(self, cutoff: int) -> int:
        return self._delete_before(cutoff).deleted

    def _delete_before(self, cutoff: int) -> sqlite_ops.Retention:
        with self._checkpoints() as checkpoint:
            return self._delete_chunks(cutoff, checkpoint)

    def _delete_chunks(self, cutoff: int, checkpoint: Callable[[], None]) -> sqlite_ops.Retention:
        """Delete in transactions sized to hold the write lock ~10 ms (p99 under 50 ms): a row
        costs 20-100 us to delete at 5M events (its FTS entry, ten indexes whose pages it
        dirties), so the fixed 5,000-row chunks of before held ingest off for 0.3-0.9 s. After
        each chunk the WAL is checkpointed (outside the lock) and the writer left to ingest for
        as long as the chunk took."""
        out = sqlite_ops.Retention()
        for p in self.list_projects():
            while True:
                rows = self._upkeep.chunk.rows
                held: list[float] = []
                with self._write(held) as w:
                    n = w.execute(sqlite_ops.DELETE_CHUNK, (p.id, cutoff, rows)).rowcount
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
        try:
            ck = self._connect(cache_kib=1024)  # a checkpoint copies pages; it needs no cache
        except sqlite3.Error as e:
            raise _translate(e) from None
        try:
            with self._wlock:
                if self._writer is None:
                    raise StoreUnavailable("store is not open")
                self._writer.execute(f"PRAGMA wal_autocheckpoint = {sqlite_ops.UPKEEP_AUTOCHECKPOINT}")
        except BaseException as e:
            ck.close()
            if isinstance(e, sqlite3.Error):
                raise _translate(e) from None
            raise

        def checkpoint() -> None:
            try:
                ck.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as e:
                raise _translate(e) from None

        try:
            yield checkpoint
        finally:
            with self._wlock:
                if self._writer is not None:
                    self._writer.execute(f"PRAGMA wal_autocheckpoint = {sqlite_ops.DEFAULT_AUTOCHECKPOINT}")
            ck.close()

    def maintain(self, now_us: int, retention_us: int) -> dict[str, Any]:
        """Retention (`retention_us` <= 0 keeps everything), then the freed pages back to the file
        system, then the planner's statistics refreshed when due (sqlite_ops)."""
        with self._checkpoints() as checkpoint:
            out = self._delete_chunks(now_us - retention_us, checkpoint) if retention_us > 0 else sqlite_ops.Retention()
            reclaim = self._reclaim(checkpoint)
        with self._write() as w:
            analyzed = sqlite_ops.analyze_if_due(w)
            sqlite_ops.optimize(w)
        return {**out.report(), "reclaimed_pages": reclaim.deleted, "reclaim_lock_ms_max": reclaim.report()["lock_ms_max"],
                "analyzed": analyzed}

    def _reclaim(self, checkpoint: Callable[[], None]) -> sqlite_ops.Retention:
        """Free pages back to the file system in steps sized like the deletes, down to a reserve
        that the next hours of ingest reuse anyway (sqlite_ops.reclaimable)."""
        out = sqlite_ops.Retention()
        while True:
            held: list[float] = []
            with self._write(held) as w:
                n = sqlite_ops.vacuum_step(w, self._upkeep.vacuum.rows)
            if n <= 0:
                return out
            out.add(n, held[0])
            self._upkeep.vacuum.learn(n, held[0])
            checkpoint()
            time.sleep(held[0])

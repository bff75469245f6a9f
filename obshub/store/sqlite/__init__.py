"""Embedded store: one SQLite file, zero setup, for a single hub.

    db.py       connections: one writer behind a lock, the reader pool (pool.py), snapshots
    schema.py   tables and indexes; an older store brought up to date at `open`
    writer.py   multi-row inserts, group commit, the error groups a batch stores
    compile.py  query-language AST -> SQL WHERE (the OpenSearch twin is opensearch/dsl.py)
    reader.py   search (id lookups, words by full-text hits or time windows), counts, facets,
                the user timeline's reads, analytics
    aggs.py     the SQL of facets, the errors list and analytics (bounded sets)
    aggregate.py  `aggregate`: measures per group and time bucket, exact (docs/aggregate.md)
    groups.py   error group records, stats and triage updates
    state.py    projects and tokens
    sessions.py the web sessions' shared signing key and the sessions ended by logout
    rollups.py  values of defined metrics per hour and day (their own table and retention)
    ops.py      upkeep: retention in short transactions, space reclaim, planner statistics

Why it is shaped this way:
- WAL + `synchronous=FULL`: readers never block the writer, and a COMMIT returns only after the
  WAL is fsynced, so the 2xx the ingest sends after `write_events` means "on disk" (principle 1).
  One fsync per batch, not per event, shared by concurrent batches (group commit, writer.py).
- One writer connection behind a lock (SQLite allows one writer anyway); readers take a
  connection from a small pool, so searches never wait for ingest and the number of page caches
  (hence the hub's memory) is bounded whatever the threads do (db.py).
- Aggregations read bounded sets: facets the newest 10,000 matches, the errors list a covering
  index over error occurrences in a range, analytics covering indexes of `kind=event` rows.

`SqliteStore` only wires these together, like `OpenSearchStore` does its modules.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from obshub.errors import ConfigError, StoreUnavailable
from obshub.store.base import (
    FACET_SAMPLE,
    AggBucket,
    Aggregate,
    AggregateRequest,
    CheckBucket,
    EventUnit,
    GroupRecord,
    GroupSeen,
    GroupStats,
    NewToken,
    Project,
    Record,
    RollupRow,
    Sampled,
    SearchRequest,
    TokenRecord,
    TokenScope,
    WriteResult,
)
from obshub.store.querylang import Node
from obshub.store.sqlite import ops, schema
from obshub.store.sqlite.aggregate import Aggregator
from obshub.store.sqlite.db import Db, tx
from obshub.store.sqlite.groups import Groups
from obshub.store.sqlite.reader import Reader
from obshub.store.sqlite.records import Records
from obshub.store.sqlite.rollups import Rollups
from obshub.store.sqlite.sessions import Sessions
from obshub.store.sqlite.state import State
from obshub.store.sqlite.writer import Writer

__all__ = ["SqliteStore"]


def _prepare(w: sqlite3.Connection) -> None:
    schema.prepare(w)
    ops.analyze_if_due(w)  # a store that grew without statistics gets them now


class SqliteStore:
    """The `Store` protocol on one SQLite file."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        # sqlite:///abs/path.db for absolute paths, sqlite:///./rel.db for relative ones
        self.url = f"sqlite://{self.path}" if self.path.is_absolute() else f"sqlite:///./{self.path}"
        self._db = Db(self.path, synchronous)
        self._state = State(self._db)
        self._sessions = Sessions(self._db)
        self._records = Records(self._db)
        self._rollups = Rollups(self._db)
        self._reader = Reader(self._db)
        self._groups = Groups(self._db, self._reader)
        self._aggregator = Aggregator(self._db, self._reader)
        self._writer = Writer(self._db)
        self._maintenance = ops.Maintenance(self._db, self._state.list_projects)
        # What the plan tests inspect: the very connections and SQL the store uses.
        self._snapshot = self._db.snapshot
        self._held = self._db.held  # .conn: the pool connection of this thread's `_snapshot`
        self._read = self._db.read
        self._where = self._reader.where
        self._ev_where = self._reader.ev_where
        self.search_sql = self._reader.search_sql

    _tx = staticmethod(tx)

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

    # -- search tuning (reader.py): tests lower both to run every search path -------------------
    @property
    def fts_first_max(self) -> int:
        return self._reader.fts_first_max

    @fts_first_max.setter
    def fts_first_max(self, n: int) -> None:
        self._reader.fts_first_max = n

    @property
    def window_rows(self) -> int:
        return self._reader.window_rows

    @window_rows.setter
    def window_rows(self, n: int) -> None:
        self._reader.window_rows = n

    # -- connections ---------------------------------------------------------------------------
    def open(self) -> None:
        self._db.open(_prepare)
        self._writer.start()

    def close(self) -> None:
        self._db.closed = True  # refuses new writes and reads while the writer drains
        self._writer.stop()
        self._db.close()

    @property
    def reader_connections(self) -> int:
        """Reader connections open now (at most 4): what bounds the page caches' memory."""
        return self._db.readers.open_connections

    def ping(self) -> None:
        self._db.read("SELECT 1")
        if self._db.writer is None:
            raise StoreUnavailable("store is not open")

    def exists(self) -> bool:
        return self.path.is_file()

    # -- projects and tokens -------------------------------------------------------------------
    def is_empty(self) -> bool:
        return self._state.is_empty()

    def create_project(self, name: str, public_key: str, token_hashes: Sequence[NewToken]) -> Project:
        return self._state.create_project(name, public_key, token_hashes)

    def add_token(self, project_id: int, scope: TokenScope, token_hash: str, label: str = "") -> None:
        self._state.add_token(project_id, scope, token_hash, label)

    def get_project(self, name: str) -> Project | None:
        return self._state.get_project(name)

    def get_project_by_id(self, project_id: int) -> Project | None:
        return self._state.get_project_by_id(project_id)

    def list_projects(self) -> list[Project]:
        return self._state.list_projects()

    def find_token(self, token_hash: str) -> tuple[Project, TokenScope] | None:
        return self._state.find_token(token_hash)

    def list_tokens(self, project_id: int | None = None) -> list[TokenRecord]:
        return self._state.list_tokens(project_id)

    def revoke_token(self, token_hash: str) -> TokenRecord | None:
        return self._state.revoke_token(token_hash)

    # -- web sessions --------------------------------------------------------------------------
    def shared_secret(self, name: str, candidate: str) -> str:
        return self._sessions.shared_secret(name, candidate)

    def end_session(self, session_id: str, expires_at: int) -> None:
        self._sessions.end_session(session_id, expires_at)

    def session_ended(self, session_id: str) -> bool:
        return self._sessions.session_ended(session_id)

    # -- records ----------------------------------------------------------------------------------
    def get_record(self, kind: str, key: str) -> Record | None:
        return self._records.get(kind, key)

    def list_records(self, kind: str, prefix: str = "") -> list[Record]:
        return self._records.list(kind, prefix)

    def put_record(self, kind: str, key: str, value: dict[str, Any], version: int | None = None) -> Record:
        return self._records.put(kind, key, value, version)

    def delete_record(self, kind: str, key: str, version: int | None = None) -> bool:
        return self._records.delete(kind, key, version)

    # -- events --------------------------------------------------------------------------------
    def write_events(
        self, project_id: int, events: Sequence[dict[str, Any]], groups: Sequence[GroupSeen] = ()
    ) -> WriteResult:
        return self.submit_events(project_id, events, groups).result()

    def submit_events(
        self, project_id: int, events: Sequence[dict[str, Any]], groups: Sequence[GroupSeen] = ()
    ) -> Future[WriteResult]:
        return self._writer.submit(project_id, events, groups)

    def search(self, project_id: int, req: SearchRequest) -> list[dict[str, Any]]:
        return self._reader.search(project_id, req)

    def count(self, project_id: int, query: Node | None, start: int | None, end: int | None) -> int:
        return self._reader.count(project_id, query, start, end)

    def aggregates(self, project_id: int, start: int, end: int, specs: Sequence[Aggregate]) -> list[float | None]:
        return self._reader.aggregates(project_id, start, end, specs)

    def user_events(
        self,
        project_id: int,
        user_id: str,
        start: int | None,
        end: int | None,
        limit: int,
        before: tuple[int, str] | None = None,
    ) -> list[dict[str, Any]]:
        return self._reader.user_events(project_id, user_id, start, end, limit, before)

    def request_events(
        self, project_id: int, request_ids: Sequence[str], limit: int
    ) -> dict[str, list[dict[str, Any]]]:
        return self._reader.request_events(project_id, request_ids, limit)

    def count_user_requests(self, project_id: int, user_id: str, start: int | None, end: int | None, cap: int) -> int:
        return self._reader.count_user_requests(project_id, user_id, start, end, cap)

    def facets(
        self,
        project_id: int,
        query: Node | None,
        start: int | None,
        end: int | None,
        fields: Sequence[str],
        limit: int,
        sample: int = FACET_SAMPLE,
    ) -> Sampled[dict[str, list[tuple[str, int]]]]:
        return self._reader.facets(project_id, query, start, end, fields, limit, sample)

    def event_names(self, project_id: int, start: int | None, end: int | None, limit: int) -> list[tuple[str, int]]:
        return self._reader.event_names(project_id, start, end, limit)

    def event_properties(
        self, project_id: int, name: str, start: int | None, end: int | None, sample: int = FACET_SAMPLE
    ) -> Sampled[list[str]]:
        return self._reader.event_properties(project_id, name, start, end, sample)

    def property_values(
        self,
        project_id: int,
        name: str,
        prop: str,
        start: int | None,
        end: int | None,
        limit: int,
        sample: int = FACET_SAMPLE,
    ) -> Sampled[list[tuple[Any, int]]]:
        return self._reader.property_values(project_id, name, prop, start, end, limit, sample)

    def event_rows(
        self,
        project_id: int,
        steps: Sequence[Node | None],
        start: int,
        end: int,
        prop: str | None = None,
        unit: EventUnit = "user_id",
        ids: bool = True,
    ) -> Iterator[tuple[str, int, str, int, Any]]:
        return self._reader.event_rows(project_id, steps, start, end, prop, unit, ids)

    def event_series(
        self, project_id: int, name: str | None, interval_us: int, start: int, end: int, unique: bool
    ) -> list[tuple[int, int]]:
        return self._reader.event_series(project_id, name, interval_us, start, end, unique)

    def check_series(
        self, project_id: int, names: Sequence[str], start: int, end: int, interval_us: int
    ) -> dict[str, list[CheckBucket]]:
        return self._reader.check_series(project_id, names, start, end, interval_us)

    def aggregate(self, project_id: int, req: AggregateRequest) -> AggBucket:
        return self._aggregator.aggregate(project_id, req)

    # -- error groups ----------------------------------------------------------------------------
    def get_groups(self, project_id: int, ids: Sequence[str] | None = None) -> list[GroupRecord]:
        return self._groups.get(project_id, ids)

    def group_stats(
        self, project_id: int, query: Node | None, start: int | None, end: int | None, ids: Sequence[str] | None = None
    ) -> dict[str, GroupStats]:
        return self._groups.stats(project_id, query, start, end, ids)

    def group_series(self, project_id: int, start: int, end: int, interval_us: int) -> dict[str, list[tuple[int, int]]]:
        return self._groups.series(project_id, start, end, interval_us)

    def update_group(
        self,
        project_id: int,
        group_id: str,
        state: str | None = None,
        resolved_at: int | None = None,
        merged_into: str | None = None,
    ) -> GroupRecord:
        return self._groups.update(project_id, group_id, state, resolved_at, merged_into)

    # -- rollups ---------------------------------------------------------------------------------
    def put_rollups(
        self, project_id: int, metric: str, interval: str, start: int, end: int, rows: Sequence[RollupRow]
    ) -> None:
        self._rollups.put(project_id, metric, interval, start, end, rows)

    def rollup_series(
        self, project_id: int, metric: str, interval: str, start: int, end: int, group: str | None = None
    ) -> list[RollupRow]:
        return self._rollups.series(project_id, metric, interval, start, end, group)

    def delete_rollups(self, before: int, project_id: int | None = None, metric: str | None = None) -> int:
        return self._rollups.delete(before, project_id, metric)

    # -- lifecycle -------------------------------------------------------------------------------
    def delete_before(self, cutoff: int) -> int:
        return self._maintenance.delete_before(cutoff).deleted

    def maintain(self, now_us: int, retention_us: int) -> dict[str, Any]:
        """Retention (`retention_us` <= 0 keeps everything), then the freed pages back to the file
        system, then the planner's statistics refreshed when due (ops.py)."""
        return self._maintenance.maintain(now_us, retention_us)

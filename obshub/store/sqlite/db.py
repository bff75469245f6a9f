"""Connections of the SQLite store: one writer behind a lock, a bounded pool of readers, and
reads that share one snapshot. Every other module of the store reads and writes through `Db`.

Why: SQLite allows one writer at a time anyway, so one writer connection behind a lock costs
nothing; readers take a connection from a small pool (pool.py), so searches never wait for
ingest (WAL: readers never block the writer) and the number of page caches (hence the hub's
memory) is bounded whatever the threads do. `synchronous=FULL`: a COMMIT returns only after the
WAL is fsynced, so the 2xx the ingest sends after a write means "on disk".
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from obshub.errors import ConfigError, QueryError, StoreOverloaded, StoreUnavailable
from obshub.store.sqlite.pool import ReaderPool

__all__ = ["Db", "translate", "translate_read", "tx"]

_READERS = 4  # reader connections at most: 2 cores run 2 queries; 4 keep one slow query from blocking
_READER_CACHE_KIB = 16 * 1024  # page cache per reader connection: 4 x 16 MiB at most
_WRITER_CACHE_KIB = 32 * 1024
_READER_IDLE_S = 60.0  # a reader connection unused this long is closed (its cache freed)
# A checkpoint that resets the WAL truncates it to this size: without a limit the file stays at
# its high-water mark (160 MiB seen at 5M events) although a checkpoint emptied it. Above the
# working size: 4 MB between automatic checkpoints plus the largest commit (20,000 rows, ~12 MB).
_WAL_LIMIT_BYTES = 32 * 1024 * 1024


def translate(exc: sqlite3.Error) -> Exception:
    """A sqlite3 error as the hub's: busy -> StoreOverloaded (503 + Retry-After), else
    StoreUnavailable."""
    msg = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg):
        return StoreOverloaded(f"sqlite busy: {msg}")
    return StoreUnavailable(f"sqlite: {msg}")


# Primary result codes of a statement SQLite refuses to run (the rest: I/O, corruption, full
# disk, locks, a closed database... are outages). SQLITE_ERROR is also "no such table", which
# only a broken or foreign file gives: that stays an outage.
_REFUSED_CODES = frozenset((1, 18, 20, 25))  # SQLITE_ERROR, SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE


def translate_read(exc: sqlite3.Error | OverflowError) -> Exception:
    """A failed read as the hub's error. A query SQLite refuses (an expression too deep, too
    many terms, a full-text syntax it rejects, an integer past 64 bits) is the query's fault: a
    QueryError (400), never a 503 that marks the store down and logs an outage. Queries are
    bounded before they get here (obshub/store/querylang.py); this is the net under that."""
    if isinstance(exc, OverflowError):  # raised by sqlite3 binding a Python int past 64 bits
        return QueryError(f"the store cannot run this query: {exc}")
    code = getattr(exc, "sqlite_errorcode", None)
    msg = str(exc)
    if code is None:  # raised by the sqlite3 module itself, before SQLite saw the statement
        refused = isinstance(exc, (sqlite3.ProgrammingError, sqlite3.DataError)) and "closed" not in msg
    else:
        refused = code & 0xFF in _REFUSED_CODES and not msg.startswith("no such")
    return QueryError(f"the store cannot run this query: {msg}") if refused else translate(exc)


@contextmanager
def tx(conn: sqlite3.Connection) -> Iterator[None]:
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


class Db:
    """The connections to one SQLite file. `open` connects the writer; reads connect lazily."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self._sync = synchronous
        self.lock = threading.Lock()  # held by whoever uses `writer`
        self.writer: sqlite3.Connection | None = None
        self.readers = ReaderPool(self.connect_reader, _READERS, _READER_IDLE_S, wait_s=10.0)
        self.held = threading.local()  # .conn: the pool connection of this thread's `snapshot`
        self.closed = False

    def connect(self, cache_kib: int = _WRITER_CACHE_KIB) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute(f"PRAGMA synchronous = {self._sync}")
        conn.execute(f"PRAGMA cache_size = -{cache_kib}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")
        return conn

    def connect_reader(self) -> sqlite3.Connection:
        conn = self.connect(_READER_CACHE_KIB)
        conn.execute("PRAGMA query_only = 1")
        return conn

    def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Connect the writer; `prepare` makes or migrates the schema on it first."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"OBSHUB_STORE: cannot create directory {self.path.parent}: {e}") from None
        try:
            w = self.connect()
            prepare(w)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open sqlite database {self.path}: {e}") from None
        self.writer = w
        self.closed = False
        self.readers.reopen()

    def close(self) -> None:
        self.closed = True
        with self.lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        self.readers.close()

    @contextmanager
    def write(self, held: list[float] | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction; `held` (if given) gets how long it held the write lock, in s,
        BEGIN to COMMIT (what every other writer waited at most meanwhile)."""
        with self.lock:
            if self.writer is None:
                raise StoreUnavailable("store is not open")
            started = time.perf_counter()
            try:
                with tx(self.writer):
                    yield self.writer
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as e:
                raise translate(e) from None
            finally:
                if held is not None:
                    held.append(time.perf_counter() - started)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.closed:
            raise StoreUnavailable("store is closed")
        try:
            held: sqlite3.Connection | None = getattr(self.held, "conn", None)
            if held is not None:  # inside `snapshot`: its read transaction
                return held.execute(sql, params).fetchall()
            with self.readers.connection() as conn:
                return conn.execute(sql, params).fetchall()
        except (sqlite3.Error, OverflowError) as e:
            raise translate_read(e) from None

    def stream(self, sql: str, params: Sequence[Any] = (), batch: int = 10_000) -> Iterator[tuple[Any, ...]]:
        """The rows of one SELECT, `batch` at a time, on one snapshot (one pool connection held
        while the caller iterates): bounded memory for reads of millions of rows."""
        with self.snapshot():
            conn: sqlite3.Connection = self.held.conn
            try:
                cur = conn.execute(sql, params)
                while rows := cur.fetchmany(batch):
                    yield from rows
            except (sqlite3.Error, OverflowError) as e:
                raise translate_read(e) from None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """The reads inside see one snapshot (one WAL read transaction): this thread holds one
        pool connection for the block, and `read` uses it."""
        if getattr(self.held, "conn", None) is not None:  # nested: already in one
            yield
            return
        with self.readers.connection() as conn:
            try:
                conn.execute("BEGIN")
            except sqlite3.Error as e:
                raise translate(e) from None
            self.held.conn = conn
            try:
                yield
            finally:
                self.held.conn = None
                if conn.in_transaction:
                    conn.execute("COMMIT")

"""Operations of the SQLite store: reader connections stay few whatever the threads do,
retention deletes in short transactions and gives the space back, the WAL file shrinks after a
burst, and a big store without planner statistics gets them."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from obshub.errors import StoreOverloaded, StoreUnavailable
from obshub.events import normalize
from obshub.store.base import SearchRequest
from obshub.store.sqlite import SqliteStore
from obshub.store.sqlite import ops as sqlite_ops
from obshub.store.sqlite.pool import ReaderPool
from tests.factories import event, now_us

DAY = 86_400_000_000


def _events(n: int, ts: int, size: int = 40) -> list[dict[str, object]]:
    return [
        normalize(event(ts=ts + i, message=f"line {i} " + "x" * size, request_id=f"r{i % 97}"), ts) for i in range(n)
    ]


def _db_fds(path: Path) -> int:
    """Open file descriptors of this process on the database file itself (one per connection)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                n += 1
        except OSError:
            pass
    return n


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "obshub.db")
    s.open()
    assert s.create_project("test", "pk", []).id == 1  # retention deletes per project
    yield s
    s.close()


def test_reads_from_many_fresh_threads_use_a_bounded_pool(store: SqliteStore) -> None:
    """The hub's worker threads stop after 10 s idle and new ones take over: connections per
    thread piled up (one page cache each). 60 fresh threads, 20 reading at once, stay on 4."""
    store.write_events(1, _events(200, now_us() - 1000))
    before = _db_fds(store.path)
    errors: list[BaseException] = []
    gate = threading.Barrier(20)

    def read() -> None:
        try:
            gate.wait(timeout=10)
            assert len(store.search(1, SearchRequest(None, None, None, 50))) == 50
        except BaseException as e:  # reported below
            errors.append(e)

    for _ in range(3):
        threads = [threading.Thread(target=read) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert store.reader_connections <= 4
    assert _db_fds(store.path) - before <= 4  # writer included in `before`


def test_pool_waits_for_a_free_connection_then_refuses(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sqlite3.connect(path).close()
    pool = ReaderPool(lambda: sqlite3.connect(path, check_same_thread=False), size=2, idle_s=60, wait_s=0.2)
    with pool.connection() as a, pool.connection() as b:
        assert a is not b and pool.open_connections == 2
        with pytest.raises(StoreOverloaded), pool.connection():  # both busy for longer than wait_s: 503, not a hang
            pass
    with pool.connection() as c:
        assert c is a  # the most recently given back comes first (its cache is the warm one)
    pool.close()
    assert pool.open_connections == 0


def test_pool_closes_idle_connections(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sqlite3.connect(path).close()
    pool = ReaderPool(lambda: sqlite3.connect(path, check_same_thread=False), size=4, idle_s=0.05, wait_s=1)
    with pool.connection(), pool.connection(), pool.connection():
        pass
    assert pool.open_connections == 3
    time.sleep(0.1)
    with pool.connection():  # any use closes the connections idle for longer than idle_s
        assert pool.open_connections == 1
    pool.close()


def test_retention_deletes_in_short_transactions(store: SqliteStore) -> None:
    """3,000 old rows: several commits (another connection sees the data change between them),
    so ingest is never held off for the whole delete; newer rows stay."""
    t = now_us()
    store.write_events(1, _events(3000, t - 10 * DAY) + _events(10, t - 1000))
    watcher = sqlite3.connect(store.path, check_same_thread=False)
    changes, done = [0], threading.Event()

    def watch() -> None:
        last = watcher.execute("PRAGMA data_version").fetchone()[0]
        while not done.is_set():
            v = watcher.execute("PRAGMA data_version").fetchone()[0]
            if v != last:
                changes[0], last = changes[0] + 1, v

    th = threading.Thread(target=watch)
    th.start()
    try:
        out = store.maintain(t, 2 * DAY)
    finally:
        done.set()
        th.join()
        watcher.close()
    assert out["deleted"] == 3000
    assert out["transactions"] >= 2 and changes[0] >= 2, (out, changes)
    assert len(store.search(1, SearchRequest(None, None, None, 100))) == 10


def test_chunks_are_sized_to_hold_the_lock_about_10_ms() -> None:
    sizer = sqlite_ops.ChunkSizer()
    sizer.learn(5000, 0.5)  # 100 us a row, as measured at 5M events
    assert sizer.rows == 100
    sizer.learn(100, 0.001)  # cheap rows: bigger chunks, up to the cap
    assert sizer.rows == 1000
    sizer.learn(0, 0.0)  # nothing deleted: nothing learnt
    assert sizer.rows == 1000
    sizer.learn(10, 10.0)
    assert sizer.rows == sizer.low


def test_retention_gives_the_space_back(store: SqliteStore) -> None:
    """A new store has incremental auto_vacuum: after retention the free pages (beyond a small
    reserve) are returned to the file system, the file shrinks."""
    t = now_us()
    store.write_events(1, _events(6000, t - 10 * DAY, size=400))
    store.write_events(1, _events(100, t - 1000))
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    out = store.maintain(t, 2 * DAY)
    assert out["deleted"] == 6000 and out["reclaimed_pages"] > 0
    free, after = conn.execute("PRAGMA freelist_count").fetchone()[0], conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert after < pages / 2, (pages, after)
    assert free <= after // 64 + 1, (free, after)


def test_wal_file_shrinks_after_a_burst(store: SqliteStore) -> None:
    """A reader holding an old snapshot lets the WAL grow past the limit; once it is gone, the
    next checkpoint resets the WAL and the file is cut back to `journal_size_limit`."""
    wal = Path(str(store.path) + "-wal")
    reader = sqlite3.connect(store.path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()  # pins the snapshot: no reset
    t = now_us() - 1000
    k = 0
    while wal.stat().st_size <= 40 * 1024 * 1024:
        store.write_events(1, _events(5000, t - k * 10_000, size=500))
        k += 1
    reader.execute("COMMIT")
    reader.close()
    store.write_events(1, _events(10, t))  # its commit checkpoints the whole WAL
    store.write_events(1, _events(10, t))  # this one restarts it and truncates the file
    assert wal.stat().st_size <= 32 * 1024 * 1024, wal.stat().st_size


def test_big_store_without_statistics_gets_them_at_open(tmp_path: Path) -> None:
    path = tmp_path / "obshub.db"
    s = SqliteStore(path)
    s.open()
    s.close()
    conn = sqlite3.connect(path, isolation_level=None)
    # A store that grew to 200k rowids without ever being analyzed (rowids give the estimate).
    conn.execute(
        "INSERT INTO events (rowid, project_id, id, ts, received_at, kind, level) "
        "VALUES (1, 1, 'a', 1, 1, 'log', 'info'), (200000, 1, 'b', 2, 2, 'log', 'info')"
    )
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()
    s.open()
    s.close()
    assert conn.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'events'").fetchone()[0] > 0
    conn.close()


def test_small_store_keeps_the_planner_defaults(store: SqliteStore) -> None:
    store.write_events(1, _events(500, now_us() - 10 * DAY))
    store.maintain(now_us(), 2 * DAY)
    store.close()
    store.open()
    conn = sqlite3.connect(store.path)
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()
    conn.close()


def test_upkeep_and_reads_of_a_closed_store_are_store_unavailable(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "obshub.db")
    s.open()
    s.close()
    with pytest.raises(StoreUnavailable):
        s.maintain(now_us(), DAY)  # the job logs it and tries again at the next run
    with pytest.raises(StoreUnavailable):
        s.search(1, SearchRequest(None, None, None, 10))
    s.open()  # and a store opened again serves again
    assert s.search(1, SearchRequest(None, None, None, 10)) == []
    s.close()

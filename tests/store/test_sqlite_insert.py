"""The SQLite store's multi-row insert: padded power-of-two statements must count exactly the
rows that are new, across chunk boundaries, with duplicates inside and across calls."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from obshub.events import normalize
from obshub.store.sqlite import SqliteStore, schema, writer


def _conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for stmt in schema.SCHEMA:
        conn.execute(stmt)
    return conn


def _rows(ids: list[str]) -> list[tuple[object, ...]]:
    return writer.to_rows(7, [normalize({"id": i, "message": f"m {i}"}, 1_700_000_000_000_000) for i in ids])


@pytest.mark.parametrize("n", [1, 2, 3, 31, 1000, 1024, 1025, 2500])
def test_counts_new_rows_only_whatever_the_batch_size(tmp_path: Path, n: int) -> None:
    conn = _conn(tmp_path / "x.db")
    ids = [f"e{i}" for i in range(n)]
    assert writer.insert(conn, _rows(ids)) == n
    assert conn.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone() == (n, n)
    # again, half old and half new, with a duplicate inside the batch
    again = ids[: n // 2] + [f"f{i}" for i in range(n)] + ["f0"]
    assert writer.insert(conn, _rows(again)) == n
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 2 * n


def test_respects_a_small_variable_limit(tmp_path: Path) -> None:
    conn = _conn(tmp_path / "x.db")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # SQLite before 3.32
    assert writer.chunk_cap(conn) == 32
    assert writer.insert(conn, _rows([f"e{i}" for i in range(100)])) == 100


def test_a_failed_commit_rolls_back_so_the_connection_stays_usable(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "x.db")
    conn = sqlite3.connect(tmp_path / "fk.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError), s._tx(conn):  # the deferred check fails at COMMIT
        conn.execute("INSERT INTO c VALUES (42)")
    assert not conn.in_transaction
    with s._tx(conn):  # BEGIN works again
        conn.execute("INSERT INTO p VALUES (42)")
        conn.execute("INSERT INTO c VALUES (42)")
    assert conn.execute("SELECT count(*) FROM c").fetchone()[0] == 1

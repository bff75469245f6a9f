"""The user timeline's reads on SQLite are index lookups, whatever the range: every statement
on `events` searches the user or the request index, none walks the time index or scans the
table (at 5M events a walk of the time index over 7 days took seconds per page)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from obshub.events import normalize
from obshub.query.search import user_timeline
from obshub.store.sqlite import SqliteStore
from tests.factories import event, now_us, request_events

S = 1_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "obshub.db")
    s.open()
    s.create_project("p", "k", [])
    yield s
    s.close()


def _plans(conn: sqlite3.Connection, statements: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    for sql in statements:
        if " events " in sql and sql.lstrip().upper().startswith("SELECT"):
            out.append((sql, [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql)]))
    return out


def test_timeline_reads_use_the_id_indexes(store: SqliteStore) -> None:
    t = now_us() - 3600 * S
    evs = []
    for i in range(30):  # the user's requests, other users' traffic, events with no request id
        evs += request_events(f"r{i}", ["web-1", "web-2"], user_id="u1", t0=t + i * S)
        evs += request_events(f"x{i}", ["web-3"], user_id=f"other-{i % 3}", t0=t + i * S + 10)
        evs.append(event(user_id="u1", kind="event", name="click", ts=t + i * S + 500_000))
    long = [event(request_id="r-long", host="web-1", ts=t + i * 1000) for i in range(120)]
    long[0]["user_id"] = long[-1]["user_id"] = "u1"  # a request above the cap, straddling pages
    long[-1]["ts"] = t + 25 * S
    store.write_events(1, [normalize(e, now_us()) for e in evs + long])
    seen: list[str] = []
    with store._snapshot():  # every read of this thread on one pool connection, traced
        conn = store._held.conn
        conn.set_trace_callback(seen.append)
        try:
            cursor = None
            listed = []
            while True:  # with a range, as the page asks (-7d): the case the planner got wrong
                page = user_timeline(store, 1, "u1", t - 3600 * S, now_us(), limit=4, cursor=cursor)
                listed += [r["request_id"] for r in page["requests"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        finally:
            conn.set_trace_callback(None)
        plans = _plans(conn, seen)
    assert sorted(listed) == sorted([f"r{i}" for i in range(30)] + ["r-long"])
    used = {i for _, plan in plans for p in plan for i in ("ix_events_user_id", "ix_events_request_id") if i in p}
    assert used == {"ix_events_user_id", "ix_events_request_id"}, plans  # the walk, the expansion
    assert any("count(" in sql for sql, _ in plans) and any("r-long" in sql and "u1" in sql for sql, _ in plans)
    for sql, plan in plans:
        assert any("ix_events_user_id" in p or "ix_events_request_id" in p for p in plan), (sql, plan)
        assert not any(p.split()[:2] in (["SCAN", "e"], ["SCAN", "events"]) or "ix_events_ts" in p for p in plan), (
            sql,
            plan,
        )

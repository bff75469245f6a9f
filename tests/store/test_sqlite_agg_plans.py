"""Query plans of the SQLite store's aggregations (facets, errors list, sparklines, analytics,
retention): each must read the index made for it and a bounded set, never walk every event of a
range. Checked three ways: without statistics (a small or new store), with the statistics
`ANALYZE` made on the 5M-event bench store (full, and bounded by `analysis_limit` as the store
makes them): the planner only sees those numbers, so this is the plan it picks at 5M events.

The SQL is the store's own (obshub/store/sqlite/aggs.py, ops.py), on a store's schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from obshub.events import normalize
from obshub.store.querylang import parse
from obshub.store.sqlite import SqliteStore
from obshub.store.sqlite import aggs as sqlite_aggs
from obshub.store.sqlite import ops as sqlite_ops
from tests.factories import event, now_us

DAY = 86_400_000_000
FIELDS = ("level", "service", "host", "env")

# sqlite_stat1 of the 5M-event bench store (bench/lookup.py, seed 1): full ANALYZE ...
STATS_5M_FULL = {
    "ix_events_errors": "43381 43381 1 1 1 1 1",
    "ix_events_ev_ts": "238361 238361 1 1 1 1",
    "ix_events_ev_name": "238361 238361 47673 1 1 1",
    "ix_events_level": "5000000 5000000 1250000 1",
    "ix_events_group_id": "43381 43381 4339 1",
    "ix_events_session_id": "4000841 4000841 36 1",
    "ix_events_user_id": "4000841 4000841 201 1",
    "ix_events_trace_id": "4761639 4761639 6 1",
    "ix_events_request_id": "4761639 4761639 6 1",
    "ix_events_ts": "5000000 5000000 1",
    "sqlite_autoindex_events_1": "5000000 5000000 1",
}
# ... and ANALYZE with analysis_limit = 1000 (what ops.analyze_if_due runs): rough.
STATS_5M_LIMITED = {
    "ix_events_errors": "40716 1001 1 1 1 1 1",
    "ix_events_ev_ts": "241500 1001 1 1 1 1",
    "ix_events_ev_name": "213150 1001 1001 1 1 1",
    "ix_events_level": "3898200 1001 1001 1",
    "ix_events_group_id": "36778 1001 1001 1",
    "ix_events_session_id": "3778812 1001 31 1",
    "ix_events_user_id": "2003603 1001 1001 1",
    "ix_events_trace_id": "4140500 1001 6 1",
    "ix_events_request_id": "5427576 1001 5 1",
    "ix_events_ts": "5633120 1001 1",
    "sqlite_autoindex_events_1": "5083884 1001 1",
}


@pytest.fixture(scope="module", params=["no stats", "5M full", "5M limited"])
def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SqliteStore, sqlite3.Connection]]:
    path = tmp_path_factory.mktemp("plans") / "obshub.db"
    store = SqliteStore(path)
    store.open()
    t = now_us()
    store.write_events(
        1,
        [
            normalize(event(ts=t - i, kind=k, name="signup" if k == "event" else None), t)
            for i, k in enumerate(["log", "error", "event"] * 5)
        ],
    )
    conn = sqlite3.connect(path, isolation_level=None)
    stats = {"5M full": STATS_5M_FULL, "5M limited": STATS_5M_LIMITED}.get(request.param)
    if stats is not None:
        conn.execute("ANALYZE")  # makes sqlite_stat1; its rows are replaced by the 5M ones
        conn.execute("DELETE FROM sqlite_stat1")
        conn.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('events', ?, ?)", stats.items())
        conn.close()
        conn = sqlite3.connect(path, isolation_level=None)  # statistics load with the schema
    yield store, conn
    conn.close()
    store.close()


def plan(conn: sqlite3.Connection, sql: tuple[str, list[object]]) -> str:
    return "\n".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql[0], sql[1]))


def _no_walk(p: str) -> None:
    assert "SCAN e" not in p and "SCAN events" not in p, p  # no full scan of the table


def test_facets_read_the_newest_matches_through_an_index(db: tuple[SqliteStore, sqlite3.Connection]) -> None:
    store, conn = db
    t = now_us()
    p = plan(conn, sqlite_aggs.facets(*store._where(1, None, t - DAY, None), FIELDS, 10_000))
    assert "SEARCH e USING INDEX ix_events_ts (project_id=? AND ts>?)" in p, p
    _no_walk(p)
    p = plan(conn, sqlite_aggs.facets(*store._where(1, parse("level:error"), t - DAY, None), FIELDS, 10_000))
    assert "USING INDEX ix_events_level (project_id=? AND level=? AND ts>?)" in p, p
    _no_walk(p)


def test_errors_list_reads_only_error_occurrences(db: tuple[SqliteStore, sqlite3.Connection]) -> None:
    store, conn = db
    t = now_us()
    # the list (default range): the covering index of error occurrences, from the range's start
    p = plan(conn, sqlite_aggs.group_stats(*store._where(1, None, t - 14 * DAY, None), None))
    assert "SEARCH e USING COVERING INDEX ix_events_errors (project_id=? AND ts>?)" in p, p
    # `from=` empty (every occurrence): still the small covering index, not the table
    p = plan(conn, sqlite_aggs.group_stats(*store._where(1, None, None, None), None))
    assert "USING COVERING INDEX ix_events_errors" in p, p
    # with an occurrence filter: the same index, the filter read from the row
    p = plan(conn, sqlite_aggs.group_stats(*store._where(1, parse("host:web-2"), t - 14 * DAY, None), None))
    assert "ix_events_errors (project_id=? AND ts>?)" in p, p
    # one group's stats (the group page): its own occurrences
    p = plan(conn, sqlite_aggs.group_stats(*store._where(1, None, None, None), ["g1", "g2"]))
    assert "USING INDEX ix_events_group_id (project_id=? AND group_id=?)" in p, p
    # sparklines
    p = plan(conn, sqlite_aggs.group_series(*store._where(1, None, t - DAY, t), 3_600_000_000))
    assert "SEARCH e USING COVERING INDEX ix_events_errors (project_id=? AND ts>? AND ts<?)" in p, p
    for sql in (
        sqlite_aggs.group_stats(*store._where(1, None, t - DAY, None), None),
        sqlite_aggs.group_series(*store._where(1, None, t - DAY, t), 3_600_000_000),
    ):
        _no_walk(plan(conn, sql))


def test_analytics_read_covering_indexes_of_analytics_events(db: tuple[SqliteStore, sqlite3.Connection]) -> None:
    store, conn = db
    t = now_us()
    where, params = store._ev_where(1, None, t - DAY, None)
    p = plan(conn, sqlite_aggs.event_names(where, params, True, 100))
    assert "SEARCH e USING COVERING INDEX ix_events_ev_ts (project_id=? AND ts>?)" in p, p
    where, params = store._ev_where(1, None, None, None)
    assert "USING COVERING INDEX ix_events_ev_name (project_id=?)" in plan(
        conn, sqlite_aggs.event_names(where, params, False, 100)
    )
    where, params = store._ev_where(1, None, t - DAY, t)
    for unique in (False, True):
        p = plan(conn, sqlite_aggs.event_series(where, params, False, 3_600_000_000, unique))
        assert "SEARCH e USING COVERING INDEX ix_events_ev_ts (project_id=? AND ts>? AND ts<?)" in p, p
    where, params = store._ev_where(1, "signup", t - DAY, t)
    p = plan(conn, sqlite_aggs.event_series(where, params, True, 3_600_000_000, True))
    assert "SEARCH e USING COVERING INDEX ix_events_ev_name (project_id=? AND name=? AND ts>? AND ts<?)" in p, p
    where, params = store._ev_where(1, "signup", None, None)
    p = plan(conn, sqlite_aggs.newest_events(where, params, "e.attrs", 10_000, "SELECT t.p, 1, 1 FROM t"))
    assert "SEARCH e USING INDEX ix_events_ev_name (project_id=? AND name=?)" in p, p
    _no_walk(p)


def test_retention_chunk_reads_the_time_index(db: tuple[SqliteStore, sqlite3.Connection]) -> None:
    _, conn = db
    p = plan(conn, (sqlite_ops.DELETE_CHUNK, [1, now_us(), 500]))
    assert "SEARCH events USING COVERING INDEX ix_events_ts (project_id=? AND ts<?)" in p, p


def test_level_index_serves_level_search(db: tuple[SqliteStore, sqlite3.Connection]) -> None:
    """`level:error` newest first (the search page's query) starts at the level, not at the
    newest event of every level."""
    store, conn = db
    where, params = store._where(1, parse("level:error"), now_us() - DAY, None)
    p = plan(conn, (f"SELECT e.id FROM events e WHERE {where} ORDER BY e.ts DESC, e.id DESC LIMIT 101", params))
    assert "USING INDEX ix_events_level (project_id=? AND level=? AND ts>?)" in p, p

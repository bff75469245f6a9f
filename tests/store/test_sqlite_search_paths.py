"""The SQLite store's search paths give the same answers.

A word is searched from its full-text hits when they are few (`fts_first_max`) and by walking
time windows otherwise (`window_rows`, x8 each); id lookups collect rowids first. Lowering and
raising the thresholds runs every path on the same store; each must page through exactly the
events of the one-statement reference (no windows, every word's hits tested row by row), in
both orders, with and without a time range. Rowids are not in time order (events arrive out of
order) and many events share a timestamp, which is where a window bound on time or on rowids
would go wrong.
"""

from __future__ import annotations

import random
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obshub.events import normalize
from obshub.query.search import trace_query
from obshub.store.base import SearchRequest
from obshub.store.querylang import Field, Node, Or, parse
from obshub.store.sqlite import SqliteStore

NOW = 1_800_000_000_000_000
WORDS = [("alpha", 0.5), ("beta", 0.2), ("gamma", 0.05), ("delta", 0.01), ("vshard.leader", 0.004), ("mod_jk", 0.02)]


def _events() -> list[dict[str, Any]]:
    rng = random.Random(3)
    out = []
    for i in range(3000):
        words = [w for w, p in WORDS if rng.random() < p] or ["filler"]
        rng.shuffle(words)
        rid = f"r{i // 4}"
        ev: dict[str, Any] = {
            "id": f"e{i}",
            "ts": NOW - rng.randint(0, 400) * 1_000_000,  # ~7 events per second: ties
            "message": " ".join(words) + f" n={i % 13}",
            "host": f"h{i % 5}",
            "level": "error" if i % 17 == 0 else "info",
            "request_id": rid,
            "trace_id": rid if i % 3 else f"t{i // 4}",
            "user_id": f"u{i % 40}",
        }
        if i % 500 == 0:
            ev["message"] = "alpha"  # the word is also an id somewhere else
            ev["session_id"] = "gamma"
        out.append(ev)
    rng.shuffle(out)  # stored out of time order: rowids say nothing about ts
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("paths") / "built.db"
    store = SqliteStore(path)
    store.open()
    try:
        store.create_project("a", "pk-a", [])
        store.create_project("b", "pk-b", [])
        evs = [normalize(e, NOW) for e in _events()]
        for k in range(0, len(evs), 700):
            store.write_events(1, evs[k : k + 700])
        store.write_events(
            2, [normalize({"id": f"o{i}", "message": "alpha beta delta", "ts": NOW - i}, NOW) for i in range(300)]
        )
    finally:
        store.close()
    return path


# (fts_first_max, window_rows): every word rare; every word common with windows of 1, 8, 64...
# rows; the defaults; and the reference: every word common, one window as large as the store.
PATHS = {"fts-first": (10**9, 2048), "time, tiny windows": (-1, 1), "mixed": (50, 7), "defaults": (None, None)}
REFERENCE = (-1, 10**9)


@pytest.fixture(scope="module")
def stores(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SqliteStore]]:
    out = {}
    for name, (fts_max, window) in {**PATHS, "reference": REFERENCE}.items():
        path = tmp_path_factory.mktemp("paths") / "obshub.db"
        shutil.copy(built, path)
        s = SqliteStore(path)
        if fts_max is not None and window is not None:
            s.fts_first_max, s.window_rows = fts_max, window
        s.open()
        out[name] = s
    yield out
    for s in out.values():
        s.close()


QUERIES: list[Node] = [
    *(
        parse(q)
        for q in (
            "alpha",
            "beta",
            "gamma",
            "delta",
            "vshard",
            "vshard.leader",
            "leader",
            '"vshard.leader"',
            "mod_jk",
            "mod",
            "alp*",
            "vsh*",
            '"beta gamma"',
            "alpha beta",
            "alpha -beta",
            "-alpha",
            "alpha OR delta",
            "delta OR level:error",
            "gamma level:error",
            "NOT (alpha OR beta)",
            "r7",
            "r7 OR t8",
            "t8",
            "u3 alpha",
            "alpha u3",
            "e42",
            "request_id:r9 OR trace_id:t10",
            "request_id:r9 alpha",
            "host:h2 delta",
            "...",
            '"..."',
            "filler n",
            "user_id:u7 OR vshard",
            "(alpha beta) OR (gamma delta)",
            "alpha AND NOT user_id:u1",
        )
    ),
    trace_query("r12"),
    trace_query("t12"),
    Or(tuple(Field("request_id", "=", f"r{i}", True) for i in range(0, 700, 13))),
]


def _page_all(store: SqliteStore, query: Node, ascending: bool, start: int | None, end: int | None) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        page = store.search(1, SearchRequest(query, start, end, 37, after, ascending))
        ids.extend(e["id"] for e in page)
        if len(page) < 37:
            return ids
        after = (page[-1]["ts"], page[-1]["id"])


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: repr(q)[:60])
def test_every_path_pages_through_the_same_events(stores: dict[str, SqliteStore], query: Node) -> None:
    for ascending in (False, True):
        for start, end in ((None, None), (NOW - 250_000_000, NOW - 100_000_000)):
            want = _page_all(stores["reference"], query, ascending, start, end)
            assert len(want) == len(set(want))
            for name in PATHS:
                assert _page_all(stores[name], query, ascending, start, end) == want, (name, ascending, start)
                assert stores[name].count(1, query, start, end) == len(want), name


def test_the_reference_is_right_about_words(stores: dict[str, SqliteStore]) -> None:
    """A word: a token of the message (split at every character but letters, digits and `_`,
    case-insensitive), or the value of an id field."""
    events = {e["id"]: e for e in _events()}
    for word in ("alpha", "gamma", "vshard", "leader", "mod_jk", "mod", "r7", "t8"):
        want = {
            i
            for i, e in events.items()
            if word in re.split(r"[^a-z0-9_]+", e["message"].lower())
            or word in (e["id"], e["request_id"], e["trace_id"], e["user_id"], e.get("session_id"))
        }
        got = _page_all(stores["reference"], parse(word), False, None, None)
        assert set(got) == want, word
        assert bool(want) == (word != "mod"), word  # `mod` is not a token of `mod_jk`


def test_no_window_needed_when_the_first_fills_the_page(stores: dict[str, SqliteStore]) -> None:
    store = stores["time, tiny windows"]
    statements = store.search_sql(1, SearchRequest(parse("alpha"), None, None, 1))
    sql, params = next(iter(statements))
    assert "rowid BETWEEN" in sql and len(store._read(sql, params)) == 1  # the first window (1 row) fills it


def test_events_arriving_during_a_search_do_not_slip_through(tmp_path: Path) -> None:
    """A time window's rowid bound is read before its rows: both come from one snapshot, or an
    event stored in between (a rowid past the bound) would fail the word's test and pass its
    negation. Many small windows, a writer storing `GET` lines all along."""
    store = SqliteStore(tmp_path / "obshub.db")
    store.fts_first_max, store.window_rows = -1, 1
    store.open()
    store.create_project("a", "pk-a", [])
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            store.write_events(
                1, [normalize({"id": f"w{i}-{k}", "message": "GET /x", "ts": NOW + i}, NOW) for k in range(20)]
            )
            i += 1

    store.write_events(1, [normalize({"id": f"p{i}", "message": "POST /y", "ts": NOW - i}, NOW) for i in range(300)])
    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for q in ("-GET", "POST -GET", "NOT GET"):
                page = store.search(1, SearchRequest(parse(q), None, None, 50))
                assert all("GET" not in e["message"] for e in page), q
    finally:
        stop.set()
        writer.join()
        store.close()

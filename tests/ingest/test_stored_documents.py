"""The documents the hub stores are the same as the code before the typed line decoder stored.

tests/data/stored_documents.json.zst is the frozen output of tests/ingest/stored_docs.py run
on the code before `typed_line.decode_line` (and the writer's `bulk_line`): per-line problems, error
groups, each event's OpenSearch bulk line (`_source` bytes as sent) and SQLite row, for loghub
samples sent as the agent and as apps send them, tests/factories.py's events and edge cases.
Any field changed, dropped or added, any problem worded differently, fails here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import orjson

from obshub.errors import FieldError
from obshub.events import DEFAULT_LIMITS
from obshub.store.opensearch import OpenSearchStore
from obshub.store.sqlite.schema import COLS
from obshub.typed_line import decode_line
from tests.hubproc import LiveHub
from tests.ingest.stored_docs import RECEIVED_AT, lines, load_expected, stored


def _first_difference(old: list[Any], new: list[Any]) -> str:
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            return f"entry {i}:\n  before: {str(a)[:600]}\n  now:    {str(b)[:600]}"
    return f"{len(old)} entries before, {len(new)} now"


def test_stored_documents_equal_the_code_before() -> None:
    expected, now = load_expected(), stored(lines())
    for part in ("problems", "groups", "bulk", "rows"):
        assert now[part] == expected[part], f"{part} differ, {_first_difference(expected[part], now[part])}"


def test_the_typed_pass_takes_the_agent_lines() -> None:
    """The comparison above covers the typed pass: most of its lines go that way (the agent's
    form, factories' events), the others the general way (aliases, extra keys, nested attrs)."""
    taken = [line for line in lines() if line.strip() and _typed(line)]
    assert 600 <= len(taken) <= 900, len(taken)


def _typed(line: bytes) -> bool:
    try:
        return decode_line(line, RECEIVED_AT, DEFAULT_LIMITS) is not None
    except FieldError:  # a line the typed pass read and refused
        return True


def test_a_live_hub_stores_those_documents(hub: LiveHub) -> None:
    """The same lines through a real hub on each store: the answers name the same problems, and
    what the store holds (OpenSearch `_source`, SQLite rows) is the frozen documents, apart from
    the receive time (and `ts` where it defaults to it) and the project id."""
    expected = load_expected()
    body_lines = lines()
    rejected: list[list[Any]] = []
    for k in range(0, len(body_lines), 100):
        r = hub.ingest(b"\n".join(body_lines[k : k + 100]))
        assert r.status_code == 200, r.text
        rejected += [[k + p["line"], p["error"]] for p in r.json()["rejected"]]
    assert rejected == expected["problems"]
    pid = hub.creds["project_id"]
    if hub.store_url.startswith("sqlite"):
        stored_now = [list(row) for row in _sqlite_rows(hub.store_url, pid)]
        want = sorted((_masked_row(r) for r in expected["rows"]), key=lambda r: r[1])
        assert [_masked_row(r) for r in stored_now] == want
    else:
        docs = _opensearch_sources(hub.store_url, pid)
        want_docs = sorted(
            (_masked_doc(orjson.loads(b.split("\n")[1])) for b in expected["bulk"]), key=lambda d: d["id"]
        )
        assert [_masked_doc(d) for d in docs] == want_docs


def _masked_row(row: list[Any]) -> list[Any]:
    # project_id, id, ts, received_at, ...: the receive time is the live one
    out = [None, *row[1:]]
    if row[2] == row[3]:  # `ts` defaulted to the receive time
        out[2] = None
    out[3] = None
    return out


def _masked_doc(doc: dict[str, Any]) -> dict[str, Any]:
    out = {**doc, "project_id": None, "received_at": None}
    if doc["ts"] == doc["received_at"]:
        out["ts"] = out["@timestamp"] = None
    return out


def _sqlite_rows(store_url: str, project_id: int) -> list[tuple[Any, ...]]:
    path = store_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        cols = ", ".join(COLS)
        return conn.execute(
            f"SELECT project_id, {cols} FROM events WHERE project_id = ? ORDER BY id", (project_id,)
        ).fetchall()


def _opensearch_sources(store_url: str, project_id: int) -> list[dict[str, Any]]:
    store = OpenSearchStore.from_url(store_url)
    store.open()
    try:
        store.client.indices.refresh(index=store.names.events)
        resp = store.client.search(
            index=store.names.events,
            body={"query": {"term": {"project_id": project_id}}, "size": 5000, "sort": [{"id": "asc"}]},
        )
        return [h["_source"] for h in resp["hits"]["hits"]]
    finally:
        store.close()

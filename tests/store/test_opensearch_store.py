"""OpenSearch-specific behaviour on a real node: mapping conflicts, rejections with reasons,
duplicates, retention by index and by id, rollover, read-your-writes. The shared semantics
(same answers as SQLite) live in tests/contract/."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from obshub.digest import GroupSeen
from obshub.errors import Conflict, QueryError, StoreUnavailable
from obshub.events import normalize
from obshub.store.base import SearchRequest
from obshub.store.opensearch import OpenSearchStore
from obshub.store.querylang import parse
from tests.opensearch_node import drop_prefix, opensearch_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.opensearch

NOW = 1_790_000_000_000_000  # 2026-09-21, µs


@pytest.fixture
def store(opensearch_url: str) -> Iterator[OpenSearchStore]:  # noqa: F811
    url = f"{opensearch_url}&prefix=t{uuid.uuid4().hex[:10]}"
    s = OpenSearchStore.from_url(url)
    s.open()
    yield s
    s.close()
    drop_prefix(url)


@pytest.fixture
def pid(store: OpenSearchStore) -> int:
    return store.create_project("p", os.urandom(8).hex(), [("ingest", os.urandom(16).hex())]).id


def ev(i: int | str, **kw: Any) -> dict[str, Any]:
    return normalize({"id": f"e{i}", "ts": NOW + (i if isinstance(i, int) else 0), "message": f"m {i}", **kw}, NOW)


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in events]


def q(store: OpenSearchStore, pid: int, text: str) -> list[str]:
    return sorted(ids(store.search(pid, SearchRequest(query=parse(text), limit=1000))))


def test_number_then_object_in_one_attr_both_stored_and_queryable(store: OpenSearchStore, pid: int) -> None:
    # {"a": 1} and {"a": {"b": 2}} flatten to `a` and `a.b`: a leaf and an object under the same
    # name in a dynamic mapping. attrs_num escapes dots, so both index as doubles.
    r = store.write_events(pid, [ev(1, attrs={"a": 1}), ev(2, attrs={"a": {"b": 2}}), ev(3, attrs={"a": "text"})])
    assert (r.accepted, r.duplicates, r.rejected) == (3, 0, [])
    assert q(store, pid, "attrs.a:>0") == ["e1"]
    assert q(store, pid, "attrs.a.b:>=2") == ["e2"]
    assert q(store, pid, "attrs.a:text") == ["e3"]
    assert q(store, pid, "attrs.a:*") == ["e1", "e3"]
    got = {e["id"]: e["attrs"] for e in store.search(pid, SearchRequest(limit=10))}
    assert got == {"e1": {"a": 1}, "e2": {"a.b": 2}, "e3": {"a": "text"}}


def test_same_attr_with_every_json_type(store: OpenSearchStore, pid: int) -> None:
    values = [7, 7.5, "7", True, None, [1, "x"], "seven"]
    r = store.write_events(pid, [ev(i, attrs={"v": v}) for i, v in enumerate(values)])
    assert (r.accepted, r.rejected) == (len(values), [])
    assert q(store, pid, "v:7") == ["e0", "e2"]  # number 7 and string "7", like SQLite
    assert q(store, pid, 'v:"7"') == ["e2"]  # quoted: the string only
    assert q(store, pid, "v:>7") == ["e1"]  # numbers only: "seven" is not compared
    assert q(store, pid, "v:true") == ["e3"]
    assert q(store, pid, "v:sev*") == ["e6"]
    assert q(store, pid, "v:*") == [f"e{i}" for i in range(len(values))]  # null counts as present


def test_refused_document_is_rejected_with_reason_and_the_rest_kept(store: OpenSearchStore, pid: int) -> None:
    # A type clash the design can still hit: a core keyword field given an object (bypassing
    # normalize, as a buggy caller could). OpenSearch refuses that one line with a 400.
    bad = ev(2)
    bad["host"] = {"name": "web-1"}
    r = store.write_events(pid, [ev(1), bad, ev(3)])
    assert r.accepted == 2
    assert len(r.rejected) == 1 and r.rejected[0][0] == 1
    assert "mapper_parsing_exception" in r.rejected[0][1] and "host" in r.rejected[0][1]
    assert store.count(pid, None, None, None) == 2


def test_numeric_field_budget_spent_event_still_stored(store: OpenSearchStore, pid: int) -> None:
    # Past index.mapping.total_fields.limit new numeric attrs cannot be mapped: the event is
    # stored anyway, without the numeric index for them (never rejected, never lost).
    store.client.indices.put_settings(index=store.names.events, body={"index.mapping.total_fields.limit": 40})
    r = store.write_events(pid, [ev(1, attrs={f"n{k}": k for k in range(60)})])
    assert (r.accepted, r.rejected) == (1, [])
    (got,) = store.search(pid, SearchRequest(limit=5))
    assert got["attrs"] == {f"n{k}": k for k in range(60)}
    assert q(store, pid, "n59:59") == ["e1"]  # equality still works through attrs_kv


def test_duplicates_are_counted_not_stored_twice(store: OpenSearchStore, pid: int) -> None:
    batch = [ev(i) for i in range(5)]
    assert store.write_events(pid, batch).accepted == 5
    r = store.write_events(pid, [*batch, ev(5)])
    assert (r.accepted, r.duplicates) == (1, 5)
    assert store.count(pid, None, None, None) == 6


def test_same_event_id_in_two_projects_is_two_events(store: OpenSearchStore, pid: int) -> None:
    other = store.create_project("other", os.urandom(8).hex(), []).id
    assert store.write_events(pid, [ev(1)]).accepted == 1
    assert store.write_events(other, [ev(1)]).accepted == 1
    assert store.count(pid, None, None, None) == store.count(other, None, None, None) == 1


def test_read_your_writes_without_waiting_for_refresh(store: OpenSearchStore, pid: int) -> None:
    for i in range(20):
        store.write_events(pid, [ev(i)])
        assert store.count(pid, None, None, None) == i + 1


def test_search_after_pages_through_equal_timestamps(store: OpenSearchStore, pid: int) -> None:
    store.write_events(pid, [normalize({"id": f"x{i:03d}", "ts": NOW, "message": "same"}, NOW) for i in range(25)])
    seen: list[str] = []
    after = None
    while True:
        page = store.search(pid, SearchRequest(limit=7, after=after, ascending=True))
        if not page:
            break
        seen += ids(page)
        after = (page[-1]["ts"], page[-1]["id"])
    assert seen == [f"x{i:03d}" for i in range(25)]


def test_projects_tokens_and_conflicts(store: OpenSearchStore) -> None:
    assert store.is_empty()
    a = store.create_project("a", "pk-a", [("ingest", "h1"), ("read", "h2")])
    b = store.create_project("b", "pk-b", [])
    assert (a.id, b.id) == (1, 2)
    with pytest.raises(Conflict):
        store.create_project("a", "pk-z", [])
    with pytest.raises(Conflict):
        store.create_project("c", "pk-a", [])
    assert store.get_project("c") is None  # the loser of the key claim left nothing behind
    store.add_token(b.id, "read", "h3")
    store.add_token(b.id, "read", "h3")  # idempotent
    assert store.find_token("h2") == (a, "read")
    assert store.find_token("h3") == (b, "read")
    assert store.find_token("nope") is None
    assert [p.name for p in store.list_projects()] == ["a", "b"]
    assert store.get_project_by_id(2) == b and store.get_project_by_id(99) is None
    assert not store.is_empty()


def test_concurrent_project_creation_allocates_distinct_ids(opensearch_url: str) -> None:  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    url = f"{opensearch_url}&prefix=t{uuid.uuid4().hex[:10]}"
    stores = [OpenSearchStore.from_url(url) for _ in range(4)]
    for s in stores:
        s.open()
    try:
        with ThreadPoolExecutor(8) as pool:
            projects = list(pool.map(lambda i: stores[i % 4].create_project(f"p{i}", f"k{i}", []), range(16)))
        assert sorted(p.id for p in projects) == list(range(1, 17))
    finally:
        for s in stores:
            s.close()
        drop_prefix(url)


def test_retention_deletes_old_indices_whole_and_old_docs_by_id(store: OpenSearchStore, pid: int) -> None:
    day = 86_400_000_000
    store.write_events(pid, [ev(i, ts=NOW - 10 * day + i) for i in range(10)])  # all old
    assert store.lifecycle.rollover(force=True)
    store.write_events(
        pid,
        [ev(100 + i, ts=NOW - 5 * day + i) for i in range(5)]  # old ...
        + [ev(200 + i, ts=NOW + i) for i in range(5)],
    )  # ... and new, one index
    before = store.lifecycle.backing_indices()
    assert len(before) == 2
    assert store.delete_before(NOW - day) == 15
    assert store.lifecycle.backing_indices() == before[1:]  # the all-old index went whole
    assert q(store, pid, "") == [f"e{200 + i}" for i in range(5)]
    assert store.delete_before(NOW - day) == 0


def test_maintain_rolls_over_and_applies_retention(store: OpenSearchStore, pid: int) -> None:
    store.write_events(pid, [ev(1), ev(2, ts=NOW - 3_600_000_000)])
    out = store.maintain(NOW, 60_000_000)  # keep one minute
    assert out["deleted"] == 1 and out["rolled_over"] is False
    assert q(store, pid, "") == ["e1"]


def test_query_errors_are_query_errors(store: OpenSearchStore, pid: int) -> None:
    for text in ("level:loud", "ts:>yesterday-ish", "ts:2024*", "duration_ms:>1e999"):
        with pytest.raises(QueryError):
            store.search(pid, SearchRequest(query=parse(text)))


def test_unreachable_cluster_is_store_unavailable() -> None:
    s = OpenSearchStore.from_url("opensearch://127.0.0.1:1?prefix=x&timeout=2")
    t = time.monotonic()
    with pytest.raises(StoreUnavailable):
        s.open()
    assert time.monotonic() - t < 5


def test_error_groups_create_regress_update_and_stats(store: OpenSearchStore, pid: int) -> None:
    def seen(gid: str) -> GroupSeen:
        return GroupSeen(
            id=gid,
            title=f"ValueError: {gid}",
            type="ValueError",
            culprit="app.views",
            level="error",
            version="v1",
            first_seen=NOW - 1,
        )

    def occurrence(i: int, gid: str, received_at: int) -> dict[str, Any]:
        e = normalize(
            {
                "id": f"x{i}",
                "ts": NOW + i,
                "kind": "error",
                "message": "boom",
                "host": f"web-{i % 2}",
                "user_id": f"u{i % 3}",
            },
            received_at,
        )
        e["group_id"] = gid
        return e

    store.write_events(pid, [], [seen("g1"), seen("g2")])  # groups without a stored occurrence: none
    assert store.get_groups(pid) == []
    store.write_events(pid, [occurrence(i, "g1" if i < 4 else "g2", NOW) for i in range(6)], [seen("g1"), seen("g2")])
    store.write_events(pid, [occurrence(1, "g1", NOW)], [seen("g1")])  # a replay: idempotent
    assert sorted(g.id for g in store.get_groups(pid)) == ["g1", "g2"]
    (g1,) = store.get_groups(pid, ["g1"])  # first seen: its earliest stored occurrence
    assert (g1.state, g1.first_seen, g1.regressed_at, g1.title) == ("unresolved", NOW, None, "ValueError: g1")
    assert store.update_group(pid, "g1", state="resolved", resolved_at=NOW + 10).state == "resolved"
    # received before the resolution (an agent catching up): stored, but no regression
    store.write_events(pid, [occurrence(7, "g1", NOW + 5)], [seen("g1")])
    assert store.get_groups(pid, ["g1"])[0].state == "resolved"
    store.write_events(pid, [occurrence(3, "g1", NOW + 20)], [seen("g1")])  # a replay (duplicate id): nothing new
    assert store.get_groups(pid, ["g1"])[0].state == "resolved"
    store.write_events(pid, [occurrence(6, "g1", NOW + 30)], [seen("g1")])
    g1 = store.get_groups(pid, ["g1"])[0]
    assert (g1.state, g1.regressed_at) == ("unresolved", NOW + 30)
    assert store.update_group(pid, "g2", merged_into="g1").merged_into == "g1"
    with pytest.raises(Exception) as e:
        store.update_group(pid, "nope", state="ignored")
    assert type(e.value).__name__ == "NotFound"

    stats = store.group_stats(pid, None, None, None)
    assert (stats["g1"].count, stats["g1"].users, stats["g1"].hosts) == (6, 3, ["web-0", "web-1"])
    assert (stats["g1"].first_seen, stats["g1"].last_seen) == (NOW, NOW + 7)
    assert set(store.group_stats(pid, parse("host:web-0"), None, None, ["g2"])) == {"g2"}
    assert store.group_stats(pid, None, None, None, []) == {}
    assert q(store, pid, "group_id:g2") == ["x4", "x5"]


def test_big_batch_split_into_parallel_bulks_keeps_per_event_outcomes(store: OpenSearchStore, pid: int) -> None:
    first = [ev(i) for i in range(1000)]
    assert store.write_events(pid, first).accepted == 1000
    second = first + [ev(1000 + i) for i in range(200)]
    bad = dict(second[1100])
    bad["level"] = {"oops": 1}  # a keyword given an object: refused by the node
    second[1100] = bad
    r = store.write_events(pid, second)
    assert (r.accepted, r.duplicates) == (199, 1000)
    assert [i for i, _ in r.rejected] == [1100]
    assert store.count(pid, None, None, None) == 1199


def test_maintain_without_retention_keeps_everything(store: OpenSearchStore, pid: int) -> None:
    store.write_events(pid, [ev(1, ts=NOW - 400 * 86_400_000_000)])
    assert store.maintain(NOW, 0)["deleted"] == 0
    assert q(store, pid, "") == ["e1"]


def test_replay_after_rollover_is_a_duplicate_not_a_second_copy(store: OpenSearchStore, pid: int) -> None:
    batch = [ev(i) for i in range(10)]
    assert store.write_events(pid, batch).accepted == 10
    assert store.lifecycle.rollover(force=True)
    r = store.write_events(pid, [*batch, ev(10), ev(10)])  # the replay, one new event twice
    assert (r.accepted, r.duplicates) == (1, 11)
    assert store.count(pid, None, None, None) == 11
    fresh = normalize({"id": "fresh", "message": "now"}, time.time_ns() // 1000)
    assert store.write_events(pid, [fresh]).accepted == 1  # ts after the rollover: no lookup needed


def test_ping_reports_a_deleted_stream_as_unavailable(store: OpenSearchStore) -> None:
    store.ping()
    store.client.transport.perform_request("DELETE", f"/_data_stream/{store.names.events}")
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_a_running_hub_lets_the_events_shards_go_search_idle(opensearch_url: str, tmp_path: Any) -> None:  # noqa: F811
    """OpenSearch skips scheduled refreshes of a shard nobody has searched for a while (the
    search-idle state): a stream written all day and searched rarely then costs the cluster less
    (uptime/scheduling.py: a median 21% less CPU per event). The hub's own background work must not
    search the events stream every few seconds. Idleness is shortened to 3 s here; while events
    keep arriving, the write index must see next to no refreshes."""
    import httpx

    from tests.hubproc import HubProcess

    url = f"{opensearch_url}&prefix=i{uuid.uuid4().hex[:10]}"
    base = "http://" + url.split("://", 1)[1].split("?", 1)[0]
    hub = HubProcess(url, log_path=tmp_path / "hub.log").start()
    try:
        assert hub.ingest([{"message": "first"}]).status_code == 200
        stream = f"{url.split('prefix=')[1]}-events"
        r = httpx.put(f"{base}/{stream}/_settings", json={"index.search.idle.after": "3s"})
        assert r.status_code == 200, r.text

        def refreshes() -> int:
            stats = httpx.get(f"{base}/{stream}/_stats/refresh").json()
            return int(stats["_all"]["primaries"]["refresh"]["total"])

        def ingest_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                assert hub.ingest([{"message": f"line {i}"} for i in range(20)]).status_code == 200
                time.sleep(0.25)

        ingest_for(5)  # past the idle threshold since the hub's start-up reads
        before = refreshes()
        ingest_for(12)
        assert refreshes() - before <= 2, "something searched the events stream while nobody else did"
        assert len(hub.search_all("first")) == 1  # a search still sees everything (refresh on read)
    finally:
        hub.stop()
        drop_prefix(url)


def test_a_stream_made_before_the_word_rule_opens_and_switches_at_rollover(opensearch_url: str) -> None:  # noqa: F811
    """A store made by an older hub keeps its backing indices' `message` analyzer (an index's
    analysis cannot change): `open` must not try to change it, and the events of the next
    backing index follow the word rule (docs/opensearch.md: old indices keep the old one)."""
    from obshub.store.opensearch.client import build_client
    from obshub.store.opensearch.mappings import event_template
    from obshub.store.opensearch.url import parse_url

    url = f"{opensearch_url}&prefix=t{uuid.uuid4().hex[:10]}"
    cfg = parse_url(url)
    old = OpenSearchStore(cfg)
    template = event_template(old.names, cfg.shards, cfg.replicas)  # as an older hub made it:
    del template["template"]["settings"]["analysis"]  # the standard analyzer on `message`
    del template["template"]["mappings"]["properties"]["message"]["analyzer"]
    client = build_client(cfg)
    store = OpenSearchStore(cfg)
    try:
        client.indices.put_index_template(name=old.names.events_template, body=template)
        client.transport.perform_request("PUT", f"/_data_stream/{old.names.events}")
        store.open()
        pid = store.create_project("p", os.urandom(8).hex(), []).id
        store.write_events(pid, [ev(1, message="rebalance: vshard.leader moved")])
        assert q(store, pid, "vshard.leader") == ["e1"]
        assert q(store, pid, "vshard") == []  # the standard analyzer kept `vshard.leader` whole
        assert store.lifecycle.rollover(force=True)
        store.write_events(pid, [ev(2, message="rebalance: vshard.leader moved")])
        assert q(store, pid, "vshard.leader") == ["e1", "e2"]
        assert q(store, pid, "vshard") == ["e2"]
        store.close()
        store.open()  # again, with backing indices of both kinds
        assert q(store, pid, '"vshard leader"') == ["e2"]
    finally:
        client.close()
        store.close()
        drop_prefix(url)

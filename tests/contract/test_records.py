"""Records on both stores: the optimistic concurrency the lease and alert state rely on. Two
writers that read the same version: exactly one wins, on every backend."""

from __future__ import annotations

import threading

import pytest

from obshub.errors import Conflict
from obshub.store import Store


def test_create_read_replace_delete(store: Store) -> None:
    assert store.get_record("lease", "jobs") is None
    first = store.put_record("lease", "jobs", {"holder": "a", "until": 1}, version=0)
    assert first.version == 1 and first.value == {"holder": "a", "until": 1}
    with pytest.raises(Conflict):
        store.put_record("lease", "jobs", {"holder": "b"}, version=0)  # create only
    second = store.put_record("lease", "jobs", {"holder": "a", "until": 2}, version=1)
    assert second.version == 2
    with pytest.raises(Conflict):
        store.put_record("lease", "jobs", {"holder": "b"}, version=1)  # stale read
    got = store.get_record("lease", "jobs")
    assert got is not None and got.value == {"holder": "a", "until": 2} and got.version == 2
    assert got.updated_at >= first.updated_at
    last = store.put_record("lease", "jobs", {"holder": "c", "nested": {"x": [1, "two", None]}})
    assert last.version == 3
    assert store.get_record("lease", "jobs") == last
    with pytest.raises(Conflict):
        store.delete_record("lease", "jobs", version=2)
    assert store.delete_record("lease", "jobs", version=3)
    assert not store.delete_record("lease", "jobs")
    assert store.get_record("lease", "jobs") is None
    with pytest.raises(Conflict):
        store.put_record("lease", "jobs", {}, version=3)  # gone: not at version 3 any more


def test_list_by_kind_and_prefix(store: Store) -> None:
    for key in ("1:b", "1:a", "2:a", "1_x", "1%y"):
        store.put_record("alert-rule", key, {"k": key})
    store.put_record("other", "1:c", {})
    assert [r.key for r in store.list_records("alert-rule")] == ["1%y", "1:a", "1:b", "1_x", "2:a"]
    assert [r.key for r in store.list_records("alert-rule", "1:")] == ["1:a", "1:b"]  # no LIKE wildcards
    assert [r.key for r in store.list_records("alert-rule", "1%")] == ["1%y"]
    assert store.list_records("nothing") == []


def test_concurrent_compare_and_set_one_winner(store: Store) -> None:
    """Eight threads read version 1 and try to take it: one wins, seven get Conflict."""
    store.put_record("lease", "race", {"holder": None}, version=0)
    barrier = threading.Barrier(8)
    won: list[str] = []
    lost: list[str] = []

    def take(name: str) -> None:
        barrier.wait()
        try:
            store.put_record("lease", "race", {"holder": name}, version=1)
            won.append(name)
        except Conflict:
            lost.append(name)

    threads = [threading.Thread(target=take, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    rec = store.get_record("lease", "race")
    assert rec is not None and rec.value == {"holder": won[0]} and rec.version == 2


def test_last_write_wins_counts_every_write(store: Store) -> None:
    """`version=None` from several threads: no write lost from the version count."""
    threads = [
        threading.Thread(target=lambda i=i: [store.put_record("k", "n", {"i": i}) for _ in range(5)]) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec = store.get_record("k", "n")
    assert rec is not None and rec.version == 20

"""Metrics defined from queries and their rollups on both stores (docs/metrics.md): every hourly
and daily value the rollup job stores equals a brute-force Python answer over the generated
events; a day's unique users are counted over the day (not summed from its hours); late events
inside the recompute window change their buckets exactly (no double count, however often the
job runs); a backfill stopped midway (a hub restart, even between a day's rows and its progress
record) ends with the same values; rollups have their own retention."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from obshub.auth import create_project
from obshub.events import normalize
from obshub.jobs.rollups import RollupJob
from obshub.query.metrics import STATE_KIND, group_names
from obshub.settings import Settings
from obshub.store import Store, open_store
from obshub.store.base import RollupRow, SearchRequest

HOUR = 3_600_000_000
DAY = 24 * HOUR
T0 = 20_000 * DAY  # 2024-10-04 00:00 UTC
NOW = T0 + 3 * DAY + 10 * HOUR + 1_800_000_000  # day 3, 10:30
PLANS = ("free", "pro", "team")
Ev = dict[str, Any]

METRICS = (
    {"name": "signups", "query": "name:signup", "measure": "count", "group_by": "plan", "unit": "signups"},
    {"name": "active", "query": "name:signup OR name:login", "measure": "unique(user_id)"},
    {"name": "revenue", "query": "name:signup", "measure": "sum(amount)", "group_by": "plan"},
    {"name": "biggest", "query": "name:signup", "measure": "max(amount)"},
)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    s.open()
    yield s
    s.close()


def _settings(*tables: Mapping[str, Any], **kw: Any) -> Settings:
    return Settings(metrics=tuple(dict(t, project="rollups") for t in tables), **kw)


def _events(seed: int = 3, n: int = 900) -> list[Ev]:
    """Signups and logins over days 0-3 up to NOW, 25 users coming back across hours (so a day's
    unique users are fewer than the sum of its hours'), amounts as ints or floats, and other
    events the queries leave out."""
    rng = random.Random(seed)
    out: list[Ev] = []
    for i in range(n):
        ts = T0 + rng.randrange(NOW - T0)
        kind = rng.random()
        ev: Ev = {"id": f"r-{seed}-{i}", "ts": ts, "kind": "event", "user_id": f"u{rng.randint(1, 25)}"}
        if kind < 0.5:
            ev["name"] = "signup"
            ev["attrs"] = {"plan": rng.choices(PLANS, weights=(6, 3, 1))[0]}
            if rng.random() < 0.9:
                ev["attrs"]["amount"] = rng.choice((rng.randint(1, 100), round(rng.random() * 50, 2)))
        elif kind < 0.85:
            ev["name"] = "login"
        else:
            ev = {"id": f"r-{seed}-{i}", "ts": ts, "message": "a log line", "user_id": "u1"}
        out.append(ev)
    return out


def _write(store: Store, pid: int, evs: list[Ev]) -> None:
    store.write_events(pid, [normalize(e, NOW) for e in evs])


# -- the oracle ----------------------------------------------------------------------------------


def _matches(name: str, ev: Ev) -> bool:
    n = ev.get("name")
    return n == "signup" if name in ("signups", "revenue", "biggest") else n in ("signup", "login")


def _value(name: str, evs: list[Ev]) -> Any:
    if name == "signups":
        return len(evs)
    if name == "active":
        return len({e["user_id"] for e in evs})
    nums = [e["attrs"]["amount"] for e in evs if "amount" in e.get("attrs", {})]
    if not nums:
        return None
    return sum(nums) if name == "revenue" else max(nums)


def _oracle(name: str, evs: list[Ev], t: int, step: int) -> dict[str, tuple[int, Any]]:
    """{group: (count, value)} of one bucket: "" for every matching event, each plan."""
    inside = [e for e in evs if _matches(name, e) and t <= e["ts"] < t + step]
    out = {"": (len(inside), _value(name, inside))}
    if name in ("signups", "revenue"):
        for plan in PLANS:
            mine = [e for e in inside if e["attrs"]["plan"] == plan]
            if mine:
                out[plan] = (len(mine), _value(name, mine))
    return out


def _stored(store: Store, pid: int, name: str, interval: str, start: int, end: int) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in store.rollup_series(pid, name, interval, start, end):
        assert r.group not in out.setdefault(r.t, {}), f"two rows of {name} {interval} {r.t} {r.group!r}"
        out[r.t][r.group] = (r.count, r.value)
    return out


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return bool(abs(a - b) <= 1e-9 * max(1.0, abs(b)))


def _assert_equal(store: Store, pid: int, evs: list[Ev], start: int = T0, end: int = NOW) -> None:
    for name in (m["name"] for m in METRICS):
        for interval, step in (("hour", HOUR), ("day", DAY)):
            got = _stored(store, pid, name, interval, start - start % step, end)
            for t in range(start - start % step, end, step):
                want = _oracle(name, evs, t, step)
                have = got.get(t, {})
                assert set(have) == set(want), (name, interval, t, have, want)
                for g, (n, v) in want.items():
                    assert have[g][0] == n and _close(have[g][1], v), (name, interval, t, g, have[g], (n, v))


def _setup(store: Store) -> int:
    return int(create_project(store, "rollups", "http://127.0.0.1:0")["project_id"])


# -- the tests -----------------------------------------------------------------------------------


def test_hours_and_days_equal_the_oracle(store: Store) -> None:
    pid = _setup(store)
    evs = _events()
    _write(store, pid, evs)
    job = RollupJob(_settings(*METRICS), store)
    job.run(now=NOW)
    _assert_equal(store, pid, evs)
    # The data has users coming back within a day: the day's unique count is less than the sum
    # of its hours', and what is stored is the day's own count.
    for d in range(T0, NOW - NOW % DAY + DAY, DAY):
        day = _stored(store, pid, "active", "day", d, d + DAY)[d][""][1]
        hours = sum(g[""][1] for g in _stored(store, pid, "active", "hour", d, d + DAY).values())
        assert day == _oracle("active", evs, d, DAY)[""][1] < hours
    # A second run stores the same rows once (the recompute window and the previous day again).
    job.run(now=NOW + 60_000_000)
    _assert_equal(store, pid, evs)
    state = store.get_record(STATE_KIND, f"{pid}:signups")
    assert state is not None and state.value["from"] == T0 and state.value["done_to"] == NOW - NOW % HOUR + HOUR


def test_late_events_change_their_buckets_exactly(store: Store) -> None:
    pid = _setup(store)
    evs = _events(seed=5, n=400)
    _write(store, pid, evs)
    job = RollupJob(_settings(*METRICS), store)  # recompute window: the default 6 hours
    job.run(now=NOW)
    # Late: two hours ago (inside the 6 h window), 30 hours ago (outside, in yesterday).
    inside_h = NOW - NOW % HOUR - 2 * HOUR
    outside_h = NOW - NOW % HOUR - 30 * HOUR
    late = [
        {"id": f"late-{i}", "ts": t + 1000 * i, "kind": "event", "name": "signup", "user_id": f"new{i}",
         "attrs": {"plan": "team", "amount": 7}}
        for i, t in enumerate([inside_h] * 3 + [outside_h] * 2)
    ]  # fmt: skip
    before_outside = _stored(store, pid, "signups", "hour", outside_h, outside_h + HOUR)[outside_h]
    _write(store, pid, late)
    for _ in range(3):  # however often it runs: replaced, never added to
        job.run(now=NOW + 120_000_000)
        got = _stored(store, pid, "signups", "hour", inside_h, inside_h + HOUR)[inside_h]
        assert got == {g: (n, v) for g, (n, v) in _oracle("signups", evs + late, inside_h, HOUR).items()}
        assert got[""][0] == _oracle("signups", evs, inside_h, HOUR)[""][0] + 3
        # Outside the window the hour keeps its value (documented), but its day (the previous
        # day, recomputed each run) counts the late events.
        assert _stored(store, pid, "signups", "hour", outside_h, outside_h + HOUR)[outside_h] == before_outside
        for d in (NOW - NOW % DAY, outside_h - outside_h % DAY):
            day = _stored(store, pid, "signups", "day", d, d + DAY)[d]
            assert day[""] == _oracle("signups", evs + late, d, DAY)[""]
            assert day["team"] == _oracle("signups", evs + late, d, DAY)["team"]
    # A run whose window holds the late hour (48 h) brings everything back to the oracle.
    job2 = RollupJob(_settings(*METRICS, rollup_recompute_hours=48), store)
    job2.run(now=NOW + 120_000_000)
    _assert_equal(store, pid, evs + late)


def test_restart_mid_backfill_counts_nothing_twice(store_url: str) -> None:
    s = open_store(store_url)
    s.open()
    pid = _setup(s)
    evs = _events(seed=11, n=600)
    _write(s, pid, evs)
    RollupJob(_settings(*METRICS), s).run(now=NOW, max_days=1)  # then the hub stops
    state = s.get_record(STATE_KIND, f"{pid}:active")
    assert state is not None and state.value["done_to"] == T0 + DAY  # one day of three backfilled
    assert s.rollup_series(pid, "active", "day", T0 + DAY, T0 + 2 * DAY) == []  # day 1: not yet
    # Killed between a day's rows and its progress record: the record says day 0 is still to do.
    s.put_record(STATE_KIND, f"{pid}:active", {**state.value, "done_to": T0})
    s.close()
    s = open_store(store_url)  # a new hub process on the same store
    s.open()
    try:
        job = RollupJob(_settings(*METRICS), s)
        job.run(now=NOW, max_days=1)  # day 0 again (replaced), the restart's first step
        job.run(now=NOW + 60_000_000)  # the rest
        _assert_equal(s, pid, evs)
        done = s.get_record(STATE_KIND, f"{pid}:active")
        assert done is not None and done.value["done_to"] == NOW - NOW % HOUR + HOUR
    finally:
        s.close()


def test_groups_are_capped_with_other(store: Store) -> None:
    pid = _setup(store)
    t = T0 + 5 * HOUR
    plans = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + ["other"] * 6 + [500] * 7 + ["500"] * 8
    evs = [
        {"id": f"g-{i}", "ts": t + i, "kind": "event", "name": "signup", "attrs": {"plan": p}}
        for i, p in enumerate(plans)
    ]
    evs.append({"id": "g-none", "ts": t + 99, "kind": "event", "name": "signup"})  # no plan: `other`
    _write(store, pid, evs)
    m = {"name": "capped", "query": "name:signup", "group_by": "plan", "max_groups": 4}
    RollupJob(_settings(m), store).run(now=t + HOUR + 1)
    got = {r.group: r.count for r in store.rollup_series(pid, "capped", "hour", t - t % HOUR, t + HOUR)}
    # Top 4 by count: "500" (8), 500 (7), "other" (6), "a" (5); the rest (b, c, d, none) is `other`.
    assert got == {"": 36, "500": 8, "500~2": 7, "other~2": 6, "a": 5, "other": 4 + 3 + 2 + 1}
    assert group_names(["x", "other", 1.5, "1.5", "y" * 300]) == ["x", "other~2", "1.5", "1.5~2", "y" * 200]


def test_rollup_rows_replace_read_and_expire(store: Store) -> None:
    """The store capability itself: a bucket's rows replaced whole, read by group, deleted by
    age (per project and metric or all), counts kept as integers."""
    rows = [
        RollupRow("m", "", "hour", T0, 3, 3),
        RollupRow("m", "x", "hour", T0, 2, 2),
        RollupRow("m", "y", "hour", T0, 1, 1),
        RollupRow("m", "", "hour", T0 + HOUR, 1, 0.5),
    ]
    store.put_rollups(1, "m", "hour", T0, T0 + 2 * HOUR, rows)
    store.put_rollups(1, "m", "day", T0, T0 + DAY, [RollupRow("m", "", "day", T0, 4, 4)])
    store.put_rollups(2, "m", "hour", T0, T0 + HOUR, [RollupRow("m", "", "hour", T0, 9, None)])
    assert store.rollup_series(1, "m", "hour", T0, T0 + DAY) == sorted(rows, key=lambda r: (r.group, r.t))
    assert store.rollup_series(1, "m", "hour", T0, T0 + DAY, "x") == [rows[1]]
    assert isinstance(store.rollup_series(1, "m", "hour", T0, T0 + HOUR, "")[0].value, int)
    # Replace the first hour: "y" is gone from it, the second hour is untouched.
    store.put_rollups(1, "m", "hour", T0, T0 + HOUR, [RollupRow("m", "", "hour", T0, 2, 2), rows[1]])
    assert [(r.group, r.t, r.count) for r in store.rollup_series(1, "m", "hour", T0, T0 + DAY)] == [
        ("", T0, 2),
        ("", T0 + HOUR, 1),
        ("x", T0, 2),
    ]
    assert store.rollup_series(2, "m", "hour", T0, T0 + DAY) == [RollupRow("m", "", "hour", T0, 9, None)]
    assert store.delete_rollups(T0 + HOUR, project_id=1, metric="other") == 0
    assert store.delete_rollups(T0 + HOUR, project_id=1, metric="m") == 3  # two hour rows and the day
    assert [r.t for r in store.rollup_series(1, "m", "hour", T0, T0 + DAY)] == [T0 + HOUR]
    assert store.delete_rollups(T0 + DAY) == 2  # every project
    assert store.rollup_series(1, "m", "hour", 0, 2**62) == store.rollup_series(2, "m", "hour", 0, 2**62) == []


def test_rollups_outlive_events_with_their_own_retention(store: Store) -> None:
    pid = _setup(store)
    evs = _events(seed=2, n=200)
    _write(store, pid, evs)
    RollupJob(_settings(*METRICS), store).run(now=NOW)
    store.delete_before(T0 + 2 * DAY)  # the events' retention: days 0 and 1 gone
    assert not [e for e in store.search(pid, SearchRequest(end=T0 + 2 * DAY))]
    RollupJob(_settings(*METRICS, rollup_retention_days=400), store).run(now=NOW + HOUR)
    _assert_equal(store, pid, evs)  # days 0 and 1 as the raw events gave them, kept
    # A shorter retention drops the rows older than it, and only those.
    RollupJob(_settings(*METRICS, rollup_retention_days=2), store).run(now=NOW + HOUR)
    cut = NOW + HOUR - 2 * DAY
    assert store.rollup_series(pid, "signups", "hour", 0, cut) == []
    assert store.rollup_series(pid, "signups", "day", 0, cut) == []
    _assert_equal(store, pid, evs, start=cut - cut % DAY + DAY)


def test_changed_definition_recomputes_and_removed_metric_is_dropped(store: Store) -> None:
    pid = _setup(store)
    evs = _events(seed=4, n=300)
    _write(store, pid, evs)
    RollupJob(_settings(METRICS[0]), store).run(now=NOW)
    changed = {**METRICS[0], "query": "name:login"}
    RollupJob(_settings(changed), store).run(now=NOW)
    want = sum(1 for e in evs if e.get("name") == "login" and T0 <= e["ts"] < T0 + DAY)
    assert store.rollup_series(pid, "signups", "day", T0, T0 + DAY, "")[0].count == want
    assert store.rollup_series(pid, "signups", "day", T0, T0 + DAY, "free") == []  # logins have no plan
    RollupJob(_settings(METRICS[1]), store).run(now=NOW)  # `signups` gone from the config
    assert store.rollup_series(pid, "signups", "hour", 0, 2**62) == []
    assert store.get_record(STATE_KIND, f"{pid}:signups") is None

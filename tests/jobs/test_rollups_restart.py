"""A hub process SIGKILLed in the middle of a metric's backfill (docs/metrics.md, "The rollup
job") and started again on the same store: the backfill goes on from its progress record, and
when it is done every hourly and daily value equals a brute-force count over the events, on
both stores: nothing counted twice, nothing missed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from obshub.events import normalize
from obshub.query.metrics import STATE_KIND
from obshub.store import open_store
from tests.factories import now_us
from tests.hubproc import HubProcess, wait_until

HOUR = 3_600_000_000
DAY = 24 * HOUR
DAYS = 60
CONFIG = """
[[metrics]]
name = "signups"
project = "test"
query = "name:signup"
group_by = "plan"

[[metrics]]
name = "active"
project = "test"
measure = "unique(user_id)"
"""


def _oracle(evs: list[dict[str, Any]], t: int, step: int) -> tuple[dict[str, int], int]:
    inside = [e for e in evs if t <= e["ts"] < t + step]
    plans: dict[str, int] = {}
    for e in inside:
        if e.get("name") == "signup":
            plans[""] = plans.get("", 0) + 1
            plans[e["attrs"]["plan"]] = plans.get(e["attrs"]["plan"], 0) + 1
    return plans or {"": 0}, len({e["user_id"] for e in inside})


def _state(store_url: str, pid: int) -> dict[str, Any]:
    s = open_store(store_url)
    s.open()
    try:
        rec = s.get_record(STATE_KIND, f"{pid}:signups")
        return dict(rec.value) if rec else {}
    finally:
        s.close()


def test_hub_killed_mid_backfill_resumes_without_double_counting(store_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(CONFIG)
    log = tmp_path / "hub.log"
    env = {
        "OBSHUB_CONFIG": str(cfg),
        "OBSHUB_ROLLUP_INTERVAL_S": "10",
        "OBSHUB_LEASE_S": "3",
        "OBSHUB_RETENTION_DAYS": "0",
    }
    hub = HubProcess(store_url, env=env, log_path=log)
    now = now_us()
    start = now - now % DAY - DAYS * DAY
    rng = random.Random(9)
    evs: list[dict[str, Any]] = []
    for i in range(DAYS * 12):
        ev: dict[str, Any] = {
            "id": f"rs-{i}",
            "ts": start + rng.randrange(now - 60_000_000 - start),
            "kind": "event",
            "user_id": f"u{rng.randint(1, 12)}",
            "name": rng.choice(("signup", "login")),
        }
        if ev["name"] == "signup":
            ev["attrs"] = {"plan": rng.choice(("free", "pro"))}
        evs.append(ev)
    s = open_store(store_url)
    s.open()
    try:
        s.write_events(hub.project_id, [normalize(e, now) for e in evs])
    finally:
        s.close()

    hub.start()
    try:
        wait_until(lambda: "rollup backfill metric=signups done=2 of" in log.read_text(), 60, "the backfill's 2nd day")
        hub.kill()  # no shutdown: the lease stays held until it expires, the backfill stops midway
        st = _state(store_url, hub.project_id)
        target = now_us() - now_us() % HOUR
        assert start + 2 * DAY <= st["done_to"] < target, "killed after the backfill ended: more days needed"
        hub.start()

        def done() -> bool:
            listed = hub.get("/api/v1/metrics").json()["metrics"]
            return all(m["rollup"]["backfilled"] for m in listed)

        wait_until(done, 240, "the backfill's end after the restart", every=0.5)
    finally:
        hub.stop()
    text = log.read_text()
    assert text.count("rollup backfill metric=signups done=1 of") == 1  # not started again

    s = open_store(store_url)
    s.open()
    try:
        end = now - now % HOUR  # whole hours before the hub's first run: no event after `now`
        for interval, step in (("hour", HOUR), ("day", DAY)):
            rows: dict[tuple[str, int], tuple[int, Any]] = {}
            for r in s.rollup_series(hub.project_id, "signups", interval, start, end):
                assert (r.group, r.t) not in rows
                rows[(r.group, r.t)] = (r.count, r.value)
            users = {r.t: r.value for r in s.rollup_series(hub.project_id, "active", interval, start, end, "")}
            for t in range(start, end - end % step, step):
                plans, unique = _oracle(evs, t, step)
                for g, n in plans.items():
                    assert rows[(g, t)] == (n, n), (interval, t, g)
                assert {g for g, tt in rows if tt == t} == set(plans), (interval, t)
                assert users[t] == unique, (interval, t)
    finally:
        s.close()

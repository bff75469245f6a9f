"""Issue 23, "queries": hostile tenants and hostile queries must not hurt anyone else.

- Clock skew is per (project, host): project A's `web-b1` with a clock 1 h ahead does not reorder
  project B's trace of its own `web-b1`; the estimator's memory is bounded however many hosts
  clients invent. The hub's other structures keyed by client input are bounded too.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import httpx
import orjson
import pytest

from obshub.clock import SkewEstimator
from obshub.digest import Scrubber
from obshub.uptime.config import parse_check
from obshub.uptime.scheduling import Uptime, run_all
from obshub.uptime.writes import write_definition
from tests.factories import event, now_us
from tests.hubproc import LiveHub, metric

S = 1_000_000
HOUR_S = 3600


def _send(hub: LiveHub, token: str, lines: list[dict[str, Any]], skew_s: float) -> None:
    """As an agent whose clock is `skew_s` off would send them (X-Obshub-Sent-At)."""
    body = b"\n".join(orjson.dumps(x) for x in lines)
    r = hub.ingest(body, token=token, headers={"X-Obshub-Sent-At": f"{time.time() + skew_s:.6f}"})
    assert r.status_code == 200 and r.json()["accepted"] == len(lines), r.text


def _store_healthy(hub: LiveHub) -> None:
    """No request marked the store down or logged an outage."""
    assert metric(hub, "obshub_store_up") == 1
    assert not hub.app.state.hub.store_outage.failing


# ------------------------------------------------------------------------------ cross-tenant skew


def test_skew_of_one_project_never_reorders_another(hub: LiveHub) -> None:
    """B's request enters web-a1 and calls web-b1 100 ms later, both hosts on time. Project A
    also has a `web-b1`, whose clock runs 1 h ahead. B's trace keeps its order and reports no
    skew; A's own `web-b1` is corrected by its hour."""
    b = hub.new_project("b")
    t = now_us() - 60 * S
    trace = [
        event(id="b-1", request_id="rq-b", host="web-a1", ts=t, message="enter"),
        event(id="b-2", request_id="rq-b", host="web-b1", ts=t + 100_000, message="call"),
    ]
    _send(hub, b["ingest_token"], trace, 0)
    for _ in range(3):
        _send(hub, hub.ingest_token, [event(host="web-b1", request_id="rq-a")], HOUR_S)

    got = hub.get("/api/v1/trace/rq-b", token=b["read_token"]).json()
    assert [e["id"] for e in got["events"]] == ["b-1", "b-2"]
    assert got["skew_ms"] == {"web-a1": 0, "web-b1": 0}
    with httpx.Client(base_url=hub.url, timeout=30) as web:
        r = web.post("/login", data={"token": b["read_token"], "next": "/"}, headers={"Origin": hub.url})
        assert r.status_code == 303
        page = web.get("/trace/rq-b").text
    assert "this changes the order" not in page and page.index("enter") < page.index("call")

    mine = hub.get("/api/v1/trace/rq-a").json()
    assert 3_599_000 <= mine["skew_ms"]["web-b1"] <= 3_600_000


def test_skew_memory_is_bounded_by_skew_hosts(sqlite_store_url: str) -> None:
    """Every batch may name new hosts: the estimator keeps `skew_hosts` of them, the ones heard
    from most recently, and the hub's answers stay right for those."""
    hub = LiveHub(sqlite_store_url, skew_hosts=500).start()
    try:
        for batch in range(6):
            lines = [event(host=f"h-{batch}-{i}") for i in range(250)]
            _send(hub, hub.ingest_token, lines, 5)
        skew = hub.app.state.hub.skew
        assert len(skew) == 500
        assert skew.offset_us(hub.project_id, "h-5-249") > 4 * S  # the newest are kept
        assert skew.offset_us(hub.project_id, "h-0-0") == 0  # the oldest forgotten
    finally:
        hub.stop()


def test_skew_estimator_memory_per_host() -> None:
    """200k invented hosts grew a hub by 270 MiB and never gave it back. Bounded: 100,000
    observations of distinct hosts keep 2,000 keys; a key with a full window of samples (one
    batch a second for 10 min) takes under 2 KiB."""
    est = SkewEstimator(max_keys=2_000)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            est.observe(1, f"host-{i:06d}", 5 * S + i, 0)
        for i in range(2_000):  # a full window for every key left
            for minute in range(11):
                est.observe(1, f"host-{98_000 + i:06d}", 5 * S + minute, 0, now=1e6 + minute * 60.0)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(est) == 2_000
    assert used < 2_000 * 2048, used
    assert est.offset_us(1, "host-099999", now=1e6 + 600.0) >= 5 * S
    assert est.offset_us(2, "host-099999") == 0  # another project's host of the same name


def test_scrubber_memo_is_bounded_in_bytes() -> None:
    """The scrubber remembers its verdict per key; keys are client input (any length)."""
    scrub = Scrubber()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(2_000):
            assert not scrub.sensitive(f"{i:05d}" + "k" * 20_000)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert used < 2 * 1024 * 1024, used  # 40 MB of keys were kept before


def test_uptime_runner_forgets_deleted_checks(sqlite_hub: LiveHub) -> None:
    """Checks are defined and deleted by API: what the runner remembers per check (its last
    slot, its last state) goes when the check goes, instead of growing with every name used."""
    hub = sqlite_hub.app.state.hub
    pid, t = sqlite_hub.project_id, now_us()
    names = [f"churn-{i}" for i in range(20)]
    for i, name in enumerate(names):  # TEST-NET-1: never answers; the probe gives up after 0.2 s
        check = parse_check({"name": name, "target": "tcp://192.0.2.1:9", "timeout_s": 0.2}, "api", "test")
        assert write_definition(hub.store, pid, name, check, t + i, hub.scrubber)
    runner = Uptime(hub, max_parallel=20)
    try:
        run_all(runner, time.time())
        assert len(runner._up) == len(runner._last_slot) == 20
        for i, name in enumerate(names):
            assert write_definition(hub.store, pid, name, None, t + 100 + i, hub.scrubber)
        assert runner.checks(force=True) == []
        assert runner._up == {} and runner._last_slot == {}
    finally:
        runner.close()


@pytest.fixture
def sqlite_store_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/obshub.db"

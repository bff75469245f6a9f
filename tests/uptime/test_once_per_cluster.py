"""Several hubs on one store probe each check once, from the hub holding the jobs' lease
(obshub/jobs/lease.py): a check posted to any hub is probed by the holder within seconds, and a
hub that loses the lease stops exporting its last results (a stale `obshub_check_up 0` would
keep an alert firing). Two live hubs in this process, on both stores."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from obshub.errors import ConfigError
from obshub.jobs.lease import Lease
from obshub.settings import load_settings
from obshub.store import open_store
from obshub.uptime.config import parse_check
from obshub.uptime.scheduling import Uptime, run_all
from tests.hubproc import LiveHub, metric, wait_until
from tests.uptime.conftest import LOOPBACK
from tests.uptime.test_checks_api import post, wait_for


@pytest.fixture
def pair(store_url: str) -> Iterator[tuple[LiveHub, LiveHub]]:
    """Hub `a` started first (it holds the lease), then `b`, with a project of its own."""
    a = LiveHub(store_url, checks_allow_networks=LOOPBACK, lease_s=3).start()
    b = LiveHub(store_url, project="other", checks_allow_networks=LOOPBACK, lease_s=3)
    try:
        b.start()
        yield a, b
    finally:
        b.stop()
        a.stop()


def series(h: LiveHub, check: str) -> bool:
    return f'check="{check}"' in h.get("/metrics").text


def test_a_check_posted_to_a_hub_not_holding_the_lease_is_probed_at_once_by_the_holder(
    pair: tuple[LiveHub, LiveHub], web: str
) -> None:
    a, b = pair
    assert metric(a, "obshub_jobs_leader") == 1 and metric(b, "obshub_jobs_leader") == 0
    time.sleep(1.5)  # the holder has read the definitions: its cache is good for 2 minutes
    assert post(b, {"name": "late", "target": f"{web}/ok", "interval_s": 86_400}).status_code == 201
    started = time.monotonic()
    assert wait_for(b, "kind:check name:late attrs.up:true", timeout=10), "never probed"
    assert time.monotonic() - started < 5
    assert metric(a, "obshub_check_up", project="other", check="late") == 1  # the holder probed it
    assert not series(b, "late")  # b did not


def test_a_hub_losing_the_lease_stops_probing_and_exporting(pair: tuple[LiveHub, LiveHub], web: str) -> None:
    a, b = pair
    assert post(a, {"name": "web", "target": f"{web}/fail", "interval_s": 86_400}).status_code == 201
    wait_until(lambda: series(a, "web"), 10, "the holder's first probe")
    assert metric(a, "obshub_check_up", project="test", check="web") == 0
    lease = a.app.state.hub.jobs_lease
    lease.release()  # as at shutdown: b takes the lease at its next step (a third of lease_s)
    wait_until(lambda: metric(b, "obshub_jobs_leader") == 1, 5, "b taking the lease over")
    assert metric(a, "obshub_jobs_leader") == 0
    wait_until(lambda: not series(a, "web"), 5, "a forgetting its last result")
    # b probes the check's next slot (a day away): not now, a probed this one
    time.sleep(2)
    assert not series(b, "web")
    assert len(a.search_all("kind:check name:web attrs.up:*")) == 1


def test_a_new_holder_skips_the_slot_its_predecessor_may_have_probed(hub: LiveHub, web: str) -> None:
    """Two runners, each behind its own side of one lease (a lease of the test's own, beside the
    hub's "jobs" one): the holder probes the current slot; after the handover the new holder
    does not probe that slot again, and probes the next one."""
    assert post(hub, {"name": "web", "target": f"{web}/ok", "interval_s": 86_400}).status_code == 201
    stores = [open_store(hub.store_url) for _ in range(2)]
    runners: list[Uptime] = []
    try:
        for s in stores:
            s.open()
        first, second = (Lease(s, name="uptime-test", period_s=60) for s in stores)
        first.step()
        second.step()
        a, b = (Uptime(hub.app.state.hub, max_parallel=2, turn=lease) for lease in (first, second))
        runners += [a, b]
        now = time.time()
        assert len(run_all(a, now)) == 1  # the holder probes the slot open now
        assert run_all(b, now) == []  # the other does nothing
        first.release()
        second.step()
        assert second.held() and second.term == 1
        assert run_all(b, time.time()) == []  # opened before the release: `a` did it
        check = parse_check({"name": "web", "target": f"{web}/ok", "interval_s": 86_400}, "api", "test")
        following = check.slot_start(check.slot(now) + 1) + 1
        assert len(run_all(b, following)) == 1  # the next slot is b's
        assert run_all(b, following) == []  # once
        assert run_all(a, following + 86_400) == []  # a has let go
    finally:
        for r in runners:
            r.close()
        for s in stores:
            s.close()


@pytest.mark.parametrize("bad", ["1", "601", "nan", "-3", "x"])
def test_lease_s_out_of_range_stops_the_start_naming_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match="LEASE_S"):
        load_settings({"OBSHUB_LEASE_S": bad})
    assert load_settings({"OBSHUB_LEASE_S": "2.5"}).lease_s == 2.5

"""Several hubs on one store probe each check once, from the hub holding the jobs' lease
(obshub/jobs/lease.py): a check posted to any hub is probed by the holder within seconds, and a
hub that loses the lease stops exporting its last results (a stale `obshub_check_up 0` would
keep an alert firing). Two live hubs in this process, on both stores."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

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

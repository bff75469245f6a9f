"""Jobs once per cluster, with real `obshub serve` processes on one store: a check every 5 s is
probed exactly once per interval by the whole cluster (the target counts the requests), whoever
holds the jobs' lease. SIGKILL the holder: another hub probes within one lease period (+ one
interval); SIGTERM the next one: it releases the lease and the last takes over sooner. At no
point does a slot get two probes.

OpenSearch with three hubs (the deployment this is for); SQLite with two hubs on one file (not a
supported deployment, but they must not both run the jobs either)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from obshub.uptime.model import Check
from tests.hubproc import HubProcess, metric
from tests.opensearch_node import drop_prefix

INTERVAL_S = 5
LEASE_S = 4  # renewed every 1.3 s, held 3.2 s after each renewal: room for busy cores
MARGIN_S = LEASE_S / 5  # a new holder skips slots opened before the old lease ended + this (lease.py)
TICK_SLACK_S = 2.0  # a probe starts within a tick (1 s) of its slot's start, plus scheduling on busy cores


class Target:
    """An HTTP server counting GETs (epoch seconds of each)."""

    def __init__(self) -> None:
        hits: list[float] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the stdlib's name
                hits.append(time.time())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


def leaders(hubs: list[HubProcess]) -> list[HubProcess]:
    return [h for h in hubs if metric(h, "obshub_jobs_leader") == 1]


def one_leader(hubs: list[HubProcess], within_s: float) -> HubProcess:
    deadline = time.monotonic() + within_s
    while True:
        found = leaders(hubs)
        if len(found) == 1:
            return found[0]
        assert len(found) < 2, "two hubs hold the jobs' lease"
        assert time.monotonic() < deadline, "no hub holds the jobs' lease"
        time.sleep(0.2)


def run_cluster(store_url: str, n: int, tmp_path: Path, target: Target) -> None:
    check = Check(name="web", target=target.url, interval_s=INTERVAL_S, project="p0")
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'[[checks]]\nname = "web"\nproject = "p0"\ntarget = "{target.url}"\ninterval_s = {INTERVAL_S}\n')
    env = {"OBSHUB_CONFIG": str(cfg), "OBSHUB_LEASE_S": str(LEASE_S), "OBSHUB_LOG_LEVEL": "info"}
    hubs = [HubProcess(store_url, project=f"p{i}", env=env, log_path=tmp_path / f"hub{i}.log") for i in range(n)]
    alive = list(hubs)
    try:
        for h in hubs:
            h.start()
        time.sleep(4 * INTERVAL_S)
        steady = [(min(target.hits), time.time())]  # spans in which one hub held the lease throughout
        so_far = Counter(check.slot(t) for t in target.hits)
        assert max(so_far.values()) == 1, f"probes per slot: {sorted(so_far.items())}"
        leader = one_leader(alive, LEASE_S)
        with httpx.Client() as c:  # /readyz names the holder to a read token
            r = c.get(f"{leader.url}/readyz", headers={"Authorization": f"Bearer {leader.read_token}"})
        lease = r.json()["jobs_lease"]
        assert lease["held"] is True and lease["holder"] == lease["this_hub"]

        # The holder dies without a word: another hub takes the lease when it expires.
        leader.kill()
        killed_at = time.time()
        alive.remove(leader)
        time.sleep(LEASE_S + MARGIN_S + 3 * INTERVAL_S + TICK_SLACK_S)  # the takeover, then two slots or more
        leader = one_leader(alive, 1)
        after_kill = [t for t in target.hits if t > killed_at]
        assert after_kill, "nobody probed after the holder was killed"
        assert after_kill[0] - killed_at <= LEASE_S + MARGIN_S + INTERVAL_S + TICK_SLACK_S, after_kill[0] - killed_at
        steady.append((after_kill[0], time.time()))

        if len(alive) > 1:  # a graceful stop releases the lease: the next hub needs no expiry
            leader.stop()
            stopped_at = time.time()  # the old holder is gone: every later probe is another hub's
            alive.remove(leader)
            time.sleep(LEASE_S / 3 + MARGIN_S + 3 * INTERVAL_S + TICK_SLACK_S)
            one_leader(alive, 1)
            after_stop = [t for t in target.hits if t > stopped_at]
            assert after_stop, "nobody probed after the holder stopped"
            # The release is seen at a contender's next step (a third of the lease), which skips
            # the slot open then (the releasing hub may have probed it).
            assert after_stop[0] - stopped_at <= LEASE_S / 3 + MARGIN_S + INTERVAL_S + TICK_SLACK_S
            steady.append((after_stop[0], time.time()))
    finally:
        for h in hubs:
            h.stop()

    per_slot = Counter(check.slot(t) for t in target.hits)
    twice = {slot: n for slot, n in per_slot.items() if n > 1}
    assert not twice, f"slots probed more than once: {twice} (of {sorted(per_slot)})"
    # While one hub holds the lease, every slot is probed (a handover may miss one, never repeat one).
    for start, end in steady:
        span = range(check.slot(start), check.slot(end - TICK_SLACK_S) + 1)
        assert len(span) >= 2, (start, end)
        assert [per_slot[s] for s in span] == [1] * len(span), (list(span), sorted(per_slot))
    gained = [
        ln for i in range(n) for ln in (tmp_path / f"hub{i}.log").read_text().splitlines() if "lease gained" in ln
    ]
    assert len(gained) == (3 if n > 2 else 2), gained  # the first holder, then one per handover


@pytest.mark.opensearch
def test_three_hubs_on_opensearch_probe_each_slot_once(opensearch_url: str, tmp_path: Path, target: Target) -> None:
    url = f"{opensearch_url}{'&' if '?' in opensearch_url else '?'}prefix=lease{time.time_ns() % 10**9}"
    try:
        run_cluster(url, 3, tmp_path, target)
    finally:
        drop_prefix(url)


def test_two_hubs_on_one_sqlite_file_probe_each_slot_once(tmp_path: Path, target: Target) -> None:
    run_cluster(f"sqlite:///{tmp_path}/obshub.db", 2, tmp_path, target)

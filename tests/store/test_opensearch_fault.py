"""The node goes away mid-ingest (stopped, or hung with SIGSTOP) and comes back, or is not up yet
when the hub starts: nothing acknowledged is lost, nothing unstored is acknowledged. On a node
of this module's own (stopping the shared one would disturb others).

Store level: write_events and ping raise StoreUnavailable (never a raw exception), then resume.
HTTP level: a real `obshub serve` subprocess answers 503 + Retry-After (never 500, never 2xx)
while the node is down, /readyz turns 503, and an agent-like client that retries until acked
ends with exactly its events stored once.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from obshub.errors import StoreUnavailable
from obshub.events import normalize
from obshub.store.opensearch import OpenSearchStore
from tests.opensearch_node import OpenSearchNode, drop_prefix, own_opensearch_node  # noqa: F401

pytestmark = pytest.mark.opensearch


@pytest.fixture
def node_url(own_opensearch_node: OpenSearchNode) -> Iterator[str]:  # noqa: F811
    url = f"{own_opensearch_node.store_url}&prefix=f{uuid.uuid4().hex[:10]}&timeout=5"
    yield url
    own_opensearch_node.start()  # whatever the test did, leave the node up for the next one
    drop_prefix(url)


def _events(start: int, n: int) -> list[dict[str, Any]]:
    now = time.time_ns() // 1000
    return [
        normalize({"id": f"ev{i:06d}", "message": f"line {i}", "host": "web-1"}, now) for i in range(start, start + n)
    ]


def test_analytics_rows_raise_unavailable_when_the_node_dies_mid_stream(
    own_opensearch_node: OpenSearchNode,  # noqa: F811
    node_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Store.event_rows reads pages in threads (prefetch, parallel user ranges): the node killed
    between two pages is a StoreUnavailable for the caller, not a hang, and no thread stays."""
    monkeypatch.setattr("obshub.store.opensearch.reader._MAX_WINDOW", 5)
    monkeypatch.setattr("obshub.store.opensearch.reader._SPLIT_MIN", 10)
    store = OpenSearchStore.from_url(node_url)
    store.open()
    pid = store.create_project("p", os.urandom(8).hex(), []).id
    now = time.time_ns() // 1000
    evs = [
        {"kind": "event", "name": "a", "user_id": f"u{i % 30}", "ts": now - i, "id": f"a{i:03d}"} for i in range(300)
    ]
    store.write_events(pid, [normalize(e, now) for e in evs])
    threads = threading.active_count()
    rows = store.event_rows(pid, [None], now - 10**9, now + 1)
    assert next(rows)[0] == "u0"
    own_opensearch_node.kill()
    with pytest.raises(StoreUnavailable):
        for _ in rows:
            pass
    assert threading.active_count() == threads
    store.close()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_store_raises_unavailable_while_down_and_resumes(
    own_opensearch_node: OpenSearchNode,  # noqa: F811
    node_url: str,
    how: str,
) -> None:
    store = OpenSearchStore.from_url(node_url)
    store.open()
    pid = store.create_project("p", os.urandom(8).hex(), []).id
    acked = 0
    for b in range(5):
        acked += store.write_events(pid, _events(b * 100, 100)).accepted
    getattr(own_opensearch_node, how)()  # graceful stop, or SIGKILL (no flush: translog only)
    with pytest.raises(StoreUnavailable):
        store.write_events(pid, _events(500, 100))
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.count(pid, None, None, None)
    own_opensearch_node.start()
    store.ping()
    r = store.write_events(pid, _events(500, 100))  # the batch that failed, retried
    assert r.accepted + r.duplicates == 100 and not r.rejected
    acked += r.accepted + r.duplicates
    assert acked == 600
    assert store.count(pid, None, None, None) == 600
    store.close()


def test_hub_answers_503_while_node_down_and_nothing_acked_is_lost(
    own_opensearch_node: OpenSearchNode,  # noqa: F811
    node_url: str,
    tmp_path: Any,
) -> None:
    from tests.hubproc import HubProcess

    hub = HubProcess(node_url, log_path=tmp_path / "hub.log").start()
    statuses: list[int] = []
    retry_after: list[str | None] = []
    acked: set[str] = set()
    stop = threading.Event()
    batches = 0

    def agent() -> None:
        # Like obshub-agent: send a batch until it is acknowledged, honouring Retry-After.
        nonlocal batches
        i = 0
        with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {hub.ingest_token}"}, timeout=30) as c:
            while not stop.is_set() or i % 50:
                batch = [{"id": f"a{j:06d}", "message": f"agent line {j}", "host": "web-2"} for j in range(i, i + 50)]
                body = b"\n".join(orjson.dumps(x) for x in batch)
                while True:
                    try:
                        r = c.post("/api/v1/ingest", content=body, headers={"Content-Type": "application/x-ndjson"})
                    except httpx.HTTPError:
                        statuses.append(-1)
                        time.sleep(0.2)
                        continue
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        assert r.json()["rejected"] == []
                        acked.update(x["id"] for x in batch)
                        break
                    retry_after.append(r.headers.get("Retry-After"))
                    time.sleep(0.2)  # a real agent waits Retry-After; keep the test short
                i += 50
                batches += 1
                if batches > 400:
                    return

    t = threading.Thread(target=agent, daemon=True)
    try:
        t.start()
        while len(acked) < 500:
            time.sleep(0.05)
        own_opensearch_node.stop()
        down = httpx.get(f"{hub.url}/readyz", timeout=10)
        assert down.status_code == 503 and down.headers.get("Retry-After")
        time.sleep(2)  # ingest keeps trying while the node is down
        failed_while_down = [s for s in statuses if s != 200]
        own_opensearch_node.start()
        deadline = time.monotonic() + 60
        while httpx.get(f"{hub.url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "hub never became ready again"
            time.sleep(0.2)
        n_after = len(acked)
        while len(acked) < n_after + 500:
            time.sleep(0.05)
        stop.set()
        t.join(60)
        assert not t.is_alive()

        assert failed_while_down, "no request hit the outage"
        assert set(statuses) <= {200, 503, 429}, f"unexpected statuses {sorted(set(statuses))}"
        assert all(ra and ra.isdigit() for ra in retry_after)
        found = hub.search_all("host:web-2")
        ids = [e["id"] for e in found]
        assert len(ids) == len(set(ids)), "an event was stored twice"
        assert set(ids) == acked

        # The outage is a few log lines (obshub/outage.py), not one per failed request and per
        # uptime tick: the agent alone retried every 0.2 s for the whole outage.
        lines = (tmp_path / "hub.log").read_text().splitlines()
        warned = [ln for ln in lines if "[warning" in ln and "] store unavailable " in ln]
        assert 1 <= len(warned) <= 2 < len(failed_while_down), "\n".join(warned)
        assert sum("] uptime: cannot read checks" in ln for ln in lines) <= 2
        assert any("store unavailable: recovered" in ln for ln in lines)
    finally:
        stop.set()
        hub.stop()


def test_hub_started_while_its_node_is_down_waits_and_then_serves(
    own_opensearch_node: OpenSearchNode,  # noqa: F811
    node_url: str,
    tmp_path: Any,
) -> None:
    """Boot order is not guaranteed (a host's services, compose, a rolling restart): a hub whose
    cluster is down when it starts retries (`store_wait_s`), saying why, and serves once it is up."""
    from tests.hubproc import HubProcess

    log = tmp_path / "hub.log"
    hub = HubProcess(node_url, env={"OBSHUB_STORE_WAIT_S": "180"}, log_path=log)  # its project: made while up
    errors: list[BaseException] = []

    def start() -> None:
        try:
            hub.start(timeout=180)
        except BaseException as e:  # reported by the test below
            errors.append(e)

    starter = threading.Thread(target=start, daemon=True)
    own_opensearch_node.stop()
    try:
        starter.start()
        deadline = time.monotonic() + 30
        while "obshub: waiting for the store (OpenSearch unreachable" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the hub did not say it was waiting for the store"
            assert not errors, errors
            time.sleep(0.2)
        assert hub.proc is not None and hub.proc.poll() is None, "the hub gave up instead of waiting"
        own_opensearch_node.start()
        starter.join(180)
        assert not starter.is_alive() and not errors, errors
        r = hub.ingest([{"id": "after-wait", "message": "stored once the node came up"}])
        assert r.status_code == 200 and r.json()["accepted"] == 1
        assert [e["id"] for e in hub.search_all("id:after-wait")] == ["after-wait"]
        assert "Traceback" not in log.read_text()
    finally:
        hub.stop()


def test_a_hung_node_is_a_503_with_its_reason_and_the_hub_resumes(
    own_opensearch_node: OpenSearchNode,  # noqa: F811
    node_url: str,
    tmp_path: Any,
) -> None:
    """A node that stops answering without closing its sockets (a GC death spiral, a frozen VM;
    here SIGSTOP) is not a refused connection: readiness answers within its own 5 s with the
    reason, ingest with 503 after the URL's `timeout` (5 s here), and after SIGCONT the event
    sent again is stored once."""
    import signal

    from tests.hubproc import HubProcess

    pid = int((own_opensearch_node.dir / "opensearch.pid").read_text().strip())
    line = [{"id": "hung-1", "message": "sent while the node hung"}]
    hub = HubProcess(node_url, log_path=tmp_path / "hub.log").start()
    # The reason is told only to a read token, and while the store hangs only to one the hub
    # checked within token_cache_s: show it the token first.
    read = {"Authorization": f"Bearer {hub.read_token}"}
    assert httpx.get(f"{hub.url}/readyz", headers=read, timeout=10).status_code == 200
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            t = time.monotonic()
            ready = httpx.get(f"{hub.url}/readyz", headers=read, timeout=30)
            assert ready.status_code == 503 and time.monotonic() - t < 15
            assert ready.json()["error"] == "store not ready: no answer from the store within 5 s"
            anonymous = httpx.get(f"{hub.url}/readyz", timeout=30)
            assert anonymous.status_code == 503 and anonymous.json() == {"error": "store not ready"}
            t = time.monotonic()
            r = hub.ingest(line, timeout=60)
            assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
            assert "timed out" in r.json()["error"] and time.monotonic() - t < 30
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while httpx.get(f"{hub.url}/readyz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "hub never became ready again"
            time.sleep(0.2)
        again = hub.ingest(line)  # as an agent resends: the hung bulk may have landed meanwhile
        assert again.status_code == 200 and again.json()["accepted"] + again.json()["duplicates"] == 1
        assert [e["id"] for e in hub.search_all("id:hung-1")] == ["hung-1"]
    finally:
        hub.stop()


def test_a_disk_full_write_block_is_a_429_with_its_reason_logged_once(
    own_opensearch_node: OpenSearchNode,  # noqa: F811
    node_url: str,
    tmp_path: Any,
) -> None:
    """A cluster past its flood-stage disk watermark puts a read-only-allow-delete block on the
    indices (set by hand here): writes answer 429 per item. The hub tells the sender to back off
    for 30 s with the cluster's reason (without retrying the bulk itself), counts the answers,
    logs the push-back once (not per request), and stores again once the block is lifted."""
    from tests.hubproc import HubProcess

    log = tmp_path / "hub.log"
    hub = HubProcess(node_url, log_path=log).start()
    backing = f"{node_url.split('prefix=')[1].split('&')[0]}-events"
    base = f"http://127.0.0.1:{own_opensearch_node.port}"

    def block(on: bool) -> None:
        r = httpx.put(f"{base}/.ds-{backing}-*/_settings", json={"index.blocks.read_only_allow_delete": on or None})
        assert r.status_code == 200, r.text

    try:
        assert hub.ingest([{"id": "before", "message": "x"}]).status_code == 200
        try:
            block(True)
            for i in range(3):
                r = hub.ingest([{"id": f"blocked-{i}", "message": "x"}], timeout=60)
                # No retries inside the hub (a block lasts until disk is freed), and a longer
                # pause for the sender than a full write queue gets.
                assert r.status_code == 429 and r.headers.get("Retry-After") == "30", r.text
                assert "refuses writes" in r.json()["error"] and "flood-stage watermark" in r.json()["error"]
        finally:
            block(False)
        r = hub.ingest([{"id": "blocked-0", "message": "x"}])  # the agent's resend
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        text = httpx.get(f"{hub.url}/metrics").text
        assert 'obshub_ingest_requests_total{protocol="native",status="429"} 3.0' in text
        lines = log.read_text().splitlines()
        assert sum("[warning" in ln and "] store overloaded " in ln for ln in lines) == 1
        assert any("store overloaded: recovered" in ln for ln in lines)
        assert [e["id"] for e in hub.search_all("id:blocked-*")] == ["blocked-0"]
    finally:
        hub.stop()

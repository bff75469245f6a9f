"""`obshub serve --workers 3` on a real OpenSearch node: one port, three worker processes.

Which worker served a request is read from the kernel, not asked of the hub: each request goes
over a new connection, and the worker holding the server side of that connection (its socket
inode, /proc/net/tcp and /proc/PID/fd) is the one that answered. So the tests show that the
connections really spread over the workers, and then:
- /metrics, answered by any worker, counts every worker's ingest: the totals equal what was
  acknowledged; a SIGKILLed worker is replaced by the supervisor and its counts stay in the totals;
- a web session made on one worker is accepted by every worker;
- the uptime check is probed once per interval by the whole process tree, across a SIGKILL of the
  worker holding the jobs' lease;
- SQLite refuses --workers 2 with an error naming the reason, and a start that fails in the first
  worker is reported once with its exit status.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from obshub.uptime.model import Check
from tests.hubproc import REPO, HubProcess, free_port, metric, wait_until
from tests.jobs.test_jobs_once import INTERVAL_S, LEASE_S, MARGIN_S, TICK_SLACK_S, Target
from tests.opensearch_node import drop_prefix

WORKERS = 3


def workers_of(supervisor: int) -> set[int]:
    """Pids of the supervisor's children (from /proc: every process's parent pid)."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == supervisor and fields[0] != b"Z":
                out.add(int(entry))
    return out


def serving_pid(hub_port: int, client_port: int, pids: set[int]) -> int | None:
    """The worker holding the server side of the connection 127.0.0.1:client_port -> hub_port."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split()
            if parts[1].endswith(f":{hub_port:04X}") and parts[2].endswith(f":{client_port:04X}"):
                inode = parts[9]
    if inode is None:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


def request(
    hub: HubProcess, method: str, path: str, body: bytes | None, headers: dict[str, str], pids: set[int]
) -> tuple[int, bytes, int | None]:
    """One request on a new connection: (status, body, pid of the worker that answered)."""
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    try:
        conn.connect()
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, serving_pid(hub.port, client_port, pids)  # the connection is still open
    finally:
        conn.close()


@contextlib.contextmanager
def workers_hub(
    store: str, tmp_path: Path, env: dict[str, str] | None = None, status: int = 0, stop: int = signal.SIGTERM
) -> Iterator[HubProcess]:
    """`obshub serve --workers 3`, all started; at the end: stopped with `stop` (exit `status`),
    no worker left, the metrics directory removed, and no traceback in the log."""
    hub = HubProcess(store, env=env, log_path=tmp_path / "hub.log", args=["--workers", str(WORKERS)])
    try:
        hub.start(timeout=90)
        assert hub.proc is not None
        sup = hub.proc.pid
        wait_until(lambda: len(workers_of(sup)) == WORKERS, 60, f"{WORKERS} workers")
        wait_until(lambda: "3 workers (pids" in (tmp_path / "hub.log").read_text(), 60, "all workers started")
        with open(f"/proc/{min(workers_of(sup))}/environ", "rb") as f:
            env_of = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        metrics_dir = Path(env_of[b"PROMETHEUS_MULTIPROC_DIR"].decode())
        assert metrics_dir.is_dir()
        yield hub
    finally:
        hub.stop(stop, timeout=60)
    log = (tmp_path / "hub.log").read_text()
    assert hub.proc is not None and hub.proc.returncode == status, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert not workers_of(hub.proc.pid)
    assert not metrics_dir.exists()  # the supervisor removed its metrics directory


@pytest.fixture
def store(opensearch_url: str) -> Iterator[str]:
    url = f"{opensearch_url}{'&' if '?' in opensearch_url else '?'}prefix=wk{time.time_ns() % 10**9}"
    yield url
    drop_prefix(url)


def ingest_round(hub: HubProcess, pids: set[int], start: int, requests: int, per: int) -> Counter[int]:
    """`requests` NDJSON batches of `per` events, 8 at a time, each on a new connection; every
    one must be acknowledged. Returns the requests answered by each worker pid."""
    headers = {"Authorization": f"Bearer {hub.ingest_token}", "Content-Type": "application/x-ndjson"}

    def send(k: int) -> int | None:
        lines = [{"id": f"w{start + k}-{i}", "service": "workers", "message": f"batch {start + k}"} for i in range(per)]
        status, data, pid = request(
            hub, "POST", "/api/v1/ingest", "\n".join(map(json.dumps, lines)).encode(), headers, pids
        )
        assert status == 200, data
        assert json.loads(data)["accepted"] == per, data
        return pid

    with ThreadPoolExecutor(8) as pool:
        served = list(pool.map(send, range(requests)))
    assert None not in served, served  # every connection was held by one of the workers
    return Counter(p for p in served if p is not None)


def accepted(hub: HubProcess) -> float:
    return metric(hub, "obshub_ingest_events_total", protocol="native", outcome="accepted")


@pytest.mark.opensearch
def test_metrics_count_every_workers_ingest_and_survive_a_sigkilled_worker(store: str, tmp_path: Path) -> None:
    with workers_hub(store, tmp_path) as hub:
        assert hub.proc is not None
        sup = hub.proc.pid
        pids = workers_of(sup)
        per, n = 50, 120
        served = ingest_round(hub, pids, 0, n, per)
        assert len(served) >= 2, f"one worker took every connection: {served}"
        acked = n * per
        # Any worker answers the scrape; each counts the same, merged totals.
        for _ in range(5):
            assert accepted(hub) == acked
            assert metric(hub, "obshub_ingest_requests_total", protocol="native", status="200") == n
        assert metric(hub, "obshub_ingest_inflight_requests") == 0  # livesum of idle workers
        assert metric(hub, "obshub_store_up") == 1
        text = httpx.get(f"{hub.url}/metrics").text
        assert "python_info" in text and "process_cpu_seconds_total" not in text  # one worker's would mislead

        victim = served.most_common(1)[0][0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in workers_of(sup) and len(workers_of(sup)) == WORKERS, 30, "a new worker")
        wait_until(lambda: "exited with signal SIGKILL" in (tmp_path / "hub.log").read_text(), 10, "the log line")
        # The dead worker's counts stay in the totals: nothing goes backwards.
        for _ in range(5):
            assert accepted(hub) == acked
        pids = workers_of(sup)
        served = ingest_round(hub, pids, n, n, per)
        acked += n * per
        assert accepted(hub) == acked
        assert metric(hub, "obshub_ingest_requests_total", protocol="native", status="200") == 2 * n
        wait_until(lambda: len(hub.search_all("service:workers")) == acked, 30, "every event searchable")


@pytest.mark.opensearch
def test_a_web_session_is_accepted_by_every_worker(store: str, tmp_path: Path) -> None:
    with workers_hub(store, tmp_path, stop=signal.SIGINT) as hub:  # and Ctrl-C stops it cleanly
        assert hub.proc is not None
        pids = workers_of(hub.proc.pid)
        with httpx.Client(base_url=hub.url, timeout=30) as c:
            r = c.post("/login", data={"token": hub.read_token, "next": "/search"}, headers={"Origin": hub.url})
            assert r.status_code == 303, r.text
            cookie = c.cookies["obshub_session"]
        headers = {"Cookie": f"obshub_session={cookie}"}

        def page(_: int) -> tuple[int, int | None]:
            status, _, pid = request(hub, "GET", "/search", None, headers, pids)
            return status, pid

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(page, range(90)))
        assert {s for s, _ in answers} == {200}, Counter(s for s, _ in answers)  # no redirect to /login
        by = Counter(p for _, p in answers)
        assert None not in by and len(by) >= 2, by
        status, _, _ = request(hub, "GET", "/search", None, {}, pids)
        assert status == 303  # and without the cookie, a redirect to the login


def holder_pid(hub: HubProcess) -> int:
    r = httpx.get(f"{hub.url}/readyz", headers={"Authorization": f"Bearer {hub.read_token}"})
    holder = r.json()["jobs_lease"]["holder"]
    return int(holder.split(":")[1])  # host:pid:random (obshub/jobs/lease.py)


@pytest.mark.opensearch
def test_jobs_run_once_with_workers_even_when_the_holder_is_killed(store: str, tmp_path: Path) -> None:
    target = Target()
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'[[checks]]\nname = "web"\nproject = "test"\ntarget = "{target.url}"\ninterval_s = {INTERVAL_S}\n')
    check = Check(name="web", target=target.url, interval_s=INTERVAL_S, project="test")
    env = {"OBSHUB_CONFIG": str(cfg), "OBSHUB_LEASE_S": str(LEASE_S), "OBSHUB_LOG_LEVEL": "info"}
    try:
        with workers_hub(store, tmp_path, env) as hub:
            assert hub.proc is not None
            time.sleep(4 * INTERVAL_S)
            assert metric(hub, "obshub_jobs_leader") == 1  # one of the workers holds the lease
            holder = holder_pid(hub)
            assert holder in workers_of(hub.proc.pid)
            os.kill(holder, signal.SIGKILL)
            killed_at = time.time()
            time.sleep(LEASE_S + MARGIN_S + 3 * INTERVAL_S + TICK_SLACK_S)
            after = [t for t in target.hits if t > killed_at]
            assert after, "nobody probed after the holder was killed"
            assert after[0] - killed_at <= LEASE_S + MARGIN_S + INTERVAL_S + TICK_SLACK_S
            assert holder_pid(hub) != holder
            assert metric(hub, "obshub_jobs_leader") == 1
    finally:
        target.close()
    per_slot = Counter(check.slot(t) for t in target.hits)
    assert len(per_slot) >= 6, sorted(per_slot)
    assert max(per_slot.values()) == 1, f"slots probed more than once: {sorted(per_slot.items())}"
    gained = [ln for ln in (tmp_path / "hub.log").read_text().splitlines() if "lease gained" in ln]
    assert len(gained) == 2, gained  # the first holder, then the one after the SIGKILL


def test_sqlite_refuses_several_workers_naming_the_reason(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "obshub", "serve", "--workers", "2", "--store", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert p.returncode == 2
    assert "--workers 2: the SQLite store has one writer" in p.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything was made


@pytest.mark.opensearch
def test_a_failed_first_start_is_reported_once(store: str, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[alerts]]\nname = "x"\n')  # no kind: the app's startup (the jobs) refuses it
    p = subprocess.run(
        [sys.executable, "-m", "obshub", "serve", "--workers", "3", "--port", str(free_port()), "--store", store],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "OBSHUB_CONFIG": str(cfg)},
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("configuration error: OBSHUB_CONFIG: [[alerts]] #1") == 1, p.stderr


@pytest.mark.opensearch
def test_workers_that_keep_failing_to_start_stop_the_supervisor(store: str, tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text("")
    with workers_hub(store, tmp_path, {"OBSHUB_CONFIG": str(cfg)}, status=1) as hub:
        assert hub.proc is not None
        sup = hub.proc.pid
        cfg.write_text('[[alerts]]\nname = "x"\n')  # every later start fails on it
        victim = min(workers_of(sup))
        os.kill(victim, signal.SIGKILL)
        # 5 starts in a row, pauses of 0.5, 1, 2 and 4 s between them: then the supervisor stops
        # the other workers and exits 1.
        hub.proc.wait(60)
        assert hub.proc.returncode == 1
        log = (tmp_path / "hub.log").read_text()
        assert "5 worker starts in a row failed (last: status 2); stopping" in log, log[-3000:]
        assert log.count("configuration error: OBSHUB_CONFIG: [[alerts]] #1") == 5

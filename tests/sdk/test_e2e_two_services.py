"""End to end, every part real: the two-service example (shop-web on hosts web-1 and web-2 behind
an imaginary load balancer, payments on api-1), one ``obshub-agent`` process per host tailing that
host's file, and an ``obshub serve`` hub process over SQLite. A user's request must come back from
``/api/v1/trace/{id}`` with both services' lines in order, and the user's timeline must show the
second request entering on another host."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hubproc import HubProcess, free_port, wait_healthy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_services"


class Deployment:
    """Three app processes, three agents, one hub; everything on 127.0.0.1, stopped by stop()."""

    def __init__(self, root: Path):
        self.root = root
        self.hub = HubProcess(f"sqlite:///{root}/obshub.db")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[str, Path] = {}
        self.urls: dict[str, str] = {}

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, *args], cwd=self.root)
        self.procs.append(proc)
        return proc

    def _service(self, host: str, script: str, *extra: str) -> None:
        port = free_port()
        self.logs[host] = self.root / "logs" / host / f"{script.removesuffix('.py')}.jsonl"
        self.urls[host] = f"http://127.0.0.1:{port}"
        proc = self._spawn(
            str(EXAMPLE / script), "--port", str(port), "--log", str(self.logs[host]), "--host-name", host, *extra
        )
        wait_healthy(self.urls[host], proc)

    def _agent(self, host: str) -> None:
        config = self.root / f"agent-{host}.toml"
        config.write_text(
            f'hub = "{self.hub.url}"\n'
            f'token = "{self.hub.ingest_token}"\n'
            f'host = "{host}"\n'
            f'state_dir = "{self.root / "agent-state" / host}"\n'
            'metrics_address = ""\n'  # three agents on one machine: no shared metrics port
            "batch_max_age_ms = 100\n"
            "poll_interval_ms = 50\n"
            "discover_interval_ms = 100\n"
            "spool_fsync = false\n"
            "[[inputs]]\n"
            f'paths = ["{self.logs[host]}"]\n'
            'format = "json"\n'
        )
        self._spawn("-m", "obshub_agent", "--config", str(config))

    def start(self) -> Deployment:
        self.hub.start()
        self._service("api-1", "payments_api.py")
        for web in ("web-1", "web-2"):
            self._service(web, "shop_web.py", "--backend", self.urls["api-1"])
        for host in self.logs:
            self._agent(host)
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.hub.stop()

    def local_lines(self, trace_id: str) -> list[dict[str, Any]]:
        lines = []
        for path in self.logs.values():
            if path.exists():
                lines += [x for x in map(json.loads, path.read_text().splitlines()) if x.get("trace_id") == trace_id]
        return lines


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path)
    try:
        yield dep.start()
    finally:
        dep.stop()


def _checkout(dep: Deployment, host: str, user: str) -> str:
    resp = httpx.get(f"{dep.urls[host]}/checkout", params={"user": user}, timeout=10)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["trace_id"])


def _wait_trace(dep: Deployment, trace_id: str, timeout: float = 45) -> dict[str, Any]:
    """The hub's trace once it holds every line the apps wrote for it (both access lines
    included, so the local count is final before we compare)."""
    deadline = time.monotonic() + timeout
    while True:
        local = dep.local_lines(trace_id)
        accesses = [x for x in local if x["logger"] == "obshub_sdk.access"]
        resp = dep.hub.get(f"/api/v1/trace/{trace_id}")
        if resp.status_code == 200 and len(accesses) == 2 and len(resp.json()["events"]) == len(local):
            return dict(resp.json())
        if time.monotonic() > deadline:
            raise AssertionError(
                f"trace incomplete: hub {resp.status_code} {resp.text[:2000]}; local {len(local)} lines"
            )
        time.sleep(0.2)


def test_trace_and_user_timeline_across_hosts(deployment: Deployment) -> None:
    first = _checkout(deployment, "web-1", "alice")
    second = _checkout(deployment, "web-2", "alice")  # the load balancer switched alice's host

    trace = _wait_trace(deployment, first)
    events = trace["events"]
    assert trace["id"] == first
    assert set(trace["hosts"]) == {"web-1", "api-1"}
    assert set(trace["services"]) == {"shop-web", "payments"}
    assert trace["error_count"] == 0
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)  # oldest first
    messages = [e["message"] for e in events]
    order = ["checkout started", "charging card", "card charged", "order confirmed"]
    assert [m for m in messages if m in order] == order
    assert {e["request_id"] for e in events} == {events[0]["request_id"]}
    assert all(e["user_id"] == "alice" for e in events)
    by_host = {e["host"] for e in events if e["message"] == "charging card"}
    assert by_host == {"api-1"}
    analytics = {e["name"] for e in events if e["kind"] == "event"}
    assert analytics == {"checkout_started", "payment_captured", "order_completed"}
    access = [e for e in events if e["logger"] == "obshub_sdk.access"]
    assert sorted(e["attrs"]["path"] for e in access) == ["/charge", "/checkout"]

    _wait_trace(deployment, second)
    timeline = deployment.hub.get("/api/v1/users/alice/timeline")
    assert timeline.status_code == 200
    requests = timeline.json()["requests"]
    assert len(requests) == 2
    r1, r2 = requests
    assert r1["hosts"][0] == "web-1" and "api-1" in r1["hosts"]
    assert r2["hosts"][0] == "web-2" and "api-1" in r2["hosts"]
    assert set(r1["services"]) == set(r2["services"]) == {"shop-web", "payments"}
    assert r2["host_switch"] is True

    # A declined card: the error logged on api-1 arrives as a grouped-kind error with its cause.
    failed = httpx.get(f"{deployment.urls['web-1']}/checkout", params={"user": "bob", "fail": "1"}, timeout=10)
    assert failed.status_code == 402
    bad = _wait_trace(deployment, failed.json()["trace_id"])
    assert bad["error_count"] >= 1
    [error] = [e for e in bad["events"] if e["kind"] == "error"]
    assert error["host"] == "api-1" and error["user_id"] == "bob"
    assert error["error"]["type"].endswith("CardDeclined")
    assert error["error"]["chain"][0]["type"].endswith("GatewayError")

    names = deployment.hub.get("/api/v1/analytics/events").json()["events"]
    counts = {x["name"]: x["count"] for x in names}
    assert counts["checkout_started"] == 3 and counts["order_completed"] == 2

    # And the command the README tells a user to run.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "obshub",
            "trace",
            first,
            "--url",
            deployment.hub.url,
            "--token",
            deployment.hub.read_token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "web-1" in out and "api-1" in out and "charging card" in out

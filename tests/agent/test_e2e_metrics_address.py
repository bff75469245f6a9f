"""Several agents on one host and `metrics_address`: a taken port is a clear start-up error naming
the setting, "off" disables the endpoint (the agent still ships), port 0 takes any free port and
logs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from obshub_agent.config import parse_config
from tests.agent.agentproc import REPO, AgentProcess, write_config
from tests.hubproc import LiveHub, free_port, wait_until


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LiveHub]:
    h = LiveHub(f"sqlite:///{tmp_path}/hub.db").start()
    yield h
    h.stop()


def _config(tmp_path: Path, hub: LiveHub, name: str, metrics_address: str | None) -> Path:
    logs = tmp_path / name
    logs.mkdir(exist_ok=True)
    top: dict[str, object] = {
        "hub": hub.url,
        "token": hub.ingest_token,
        "host": name,
        "state_dir": str(tmp_path / f"state-{name}"),
        "poll_interval_ms": 50,
        "discover_interval_ms": 100,
        "batch_max_age_ms": 100,
    }
    if metrics_address is not None:
        top["metrics_address"] = metrics_address
    return write_config(
        tmp_path / f"{name}.toml", [{"paths": [str(logs / "*.jsonl")], "format": "json", "service": name}], **top
    )


def _write(path: Path, n: int) -> None:
    with open(path, "a") as f:
        for i in range(n):
            f.write(json.dumps({"message": f"line {i}"}) + "\n")


def test_second_agent_on_the_same_metrics_address_fails_clearly(tmp_path: Path, hub: LiveHub) -> None:
    # Every agent left at the default listens on 127.0.0.1:9480; a free port stands in for it here
    # (the real default may be taken by anything on a shared test machine).
    assert (
        parse_config({"hub": hub.url, "token": "t", "inputs": [{"paths": ["/x"]}]}, env={}).metrics_address
        == "127.0.0.1:9480"
    )
    address = f"127.0.0.1:{free_port()}"
    first = AgentProcess(
        _config(tmp_path, hub, "a", address), tmp_path / "a.log", int(address.rsplit(":", 1)[1])
    ).start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "obshub_agent", "--config", str(_config(tmp_path, hub, "b", address))],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        assert f"metrics_address: cannot listen on {address}: Address already in use" in second.stderr
        assert 'metrics_address = "off"' in second.stderr and "127.0.0.1:0" in second.stderr  # how to fix it
        assert first.proc is not None and first.proc.poll() is None  # the first one is unaffected
    finally:
        assert first.stop() == 0


@pytest.mark.parametrize("off", ["off", ""])
def test_metrics_disabled_agent_starts_and_ships(tmp_path: Path, hub: LiveHub, off: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    busy = AgentProcess(
        _config(tmp_path, hub, "a", address), tmp_path / "a.log", int(address.rsplit(":", 1)[1])
    ).start()
    quiet = AgentProcess(_config(tmp_path, hub, "b", off), tmp_path / "b.log").start()
    try:
        _write(tmp_path / "b" / "app.jsonl", 20)
        wait_until(lambda: len(hub.search_all("service:b")) == 20, 30, "agent b's lines stored", every=0.1)
        assert quiet.proc is not None and quiet.proc.poll() is None
        assert "metrics endpoint disabled" in quiet.log()
        assert "metrics on http" not in quiet.log()
        assert quiet.stop() == 0
    finally:
        quiet.stop()
        busy.stop()


def test_metrics_port_zero_is_any_free_port_logged_at_start(tmp_path: Path, hub: LiveHub) -> None:
    agent = AgentProcess(_config(tmp_path, hub, "z", "127.0.0.1:0"), tmp_path / "z.log").start()
    try:
        found: list[str] = []

        def logged() -> bool:
            found[:] = re.findall(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", agent.log())
            return bool(found)

        wait_until(logged, 20, "the metrics address in the agent's log")
        port = int(found[0])
        assert port != 0
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    assert "obshub_agent_lines_read_total" in r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        assert agent.stop() == 0

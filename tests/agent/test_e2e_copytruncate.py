"""logrotate `copytruncate` with the copy inside the globs (`app.jsonl*`, as docs/agent.md
recommends), against a real hub: the copy is a new inode holding lines already shipped; the
agent must recognise it and read only what it had not read yet (nothing stored twice, nothing lost).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.agentproc import AgentProcess, checkpoint_offset, write_config
from tests.hubproc import LiveHub, free_port, wait_until


def _write(path: Path, start: int, n: int) -> None:
    with open(path, "a") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"message": f"ct {i}", "seq": i}) + "\n")


def _copytruncate(app: Path) -> Path:
    """What `cp app.jsonl app.jsonl.1 && : > app.jsonl` (logrotate copytruncate) does."""
    copy = app.with_name(app.name + ".1")
    shutil.copyfile(app, copy)
    with open(app, "r+") as f:
        f.truncate(0)
    return copy


def _stored(hub: LiveHub) -> Counter[int]:
    return Counter(int(e["message"].split()[1]) for e in hub.search_all("service:ct"))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LiveHub]:
    h = LiveHub(f"sqlite:///{tmp_path}/hub.db").start()
    yield h
    h.stop()


def _agent(tmp_path: Path, hub: LiveHub) -> AgentProcess:
    mport = free_port()
    cfg = write_config(
        tmp_path / "agent.toml",
        [{"paths": [str(tmp_path / "logs" / "app.jsonl*")], "format": "json", "service": "ct"}],
        hub=hub.url,
        token=hub.ingest_token,
        state_dir=str(tmp_path / "state"),
        metrics_address=f"127.0.0.1:{mport}",
        poll_interval_ms=50,
        discover_interval_ms=100,
        batch_max_age_ms=100,
        backoff_initial_ms=50,
    )
    return AgentProcess(cfg, tmp_path / "agent.log", mport)


def _settled(agent: AgentProcess, state: Path, copy: Path) -> None:
    """The agent has taken the copy in (its checkpoint is at the copy's end) and shipped all it read."""

    def done() -> bool:
        m = agent.metrics()
        return checkpoint_offset(state, copy) == copy.stat().st_size and m["obshub_agent_spool_unacked_bytes"] == 0

    wait_until(done, 30, "the agent to take in the copy", every=0.1)


def test_copytruncate_copy_in_glob_is_stored_once(tmp_path: Path, hub: LiveHub) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    app = logs / "app.jsonl"
    agent = _agent(tmp_path, hub).start()
    try:
        _write(app, 0, 100)
        wait_until(lambda: sum(_stored(hub).values()) >= 100, 30, "100 lines stored", every=0.1)
        copy = _copytruncate(app)
        _settled(agent, state, copy)
        stored = _stored(hub)
        assert sorted(stored) == list(range(100)), "100 distinct"
        assert sum(stored.values()) == 100, f"stored twice: {[k for k, v in stored.items() if v > 1][:10]}"
        assert agent.metrics()["obshub_agent_file_copies_total"] == 1
        assert agent.stop() == 0
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()


def test_copytruncate_while_down_copy_longer_than_read(tmp_path: Path, hub: LiveHub) -> None:
    """The fingerprint survives a restart, and lines the agent had not read are read from the copy."""
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    app = logs / "app.jsonl"
    agent = _agent(tmp_path, hub).start()
    try:
        _write(app, 0, 100)
        wait_until(lambda: sum(_stored(hub).values()) >= 100, 30, "100 lines stored", every=0.1)
        assert agent.stop() == 0
        _write(app, 100, 50)  # only the copy will have these
        copy = _copytruncate(app)
        _write(app, 150, 10)
        agent.start()
        _settled(agent, state, copy)
        wait_until(lambda: sum(_stored(hub).values()) >= 160, 30, "160 lines stored", every=0.1)
        stored = _stored(hub)
        assert sorted(stored) == list(range(160)) and sum(stored.values()) == 160
        assert agent.stop() == 0
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()

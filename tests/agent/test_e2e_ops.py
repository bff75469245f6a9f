"""Against a real hub subprocess: backpressure with a tiny spool, bad token + SIGHUP, SIGTERM."""

from __future__ import annotations

import functools
import json
import signal
import time
from collections import Counter
from pathlib import Path

from tests.agent.agentproc import AgentProcess, write_config
from tests.hubproc import HubProcess, free_port, wait_until

PAD = "p" * 120
_wait = functools.partial(wait_until, every=0.1)


def _write_lines(path: Path, start: int, n: int, tag: str = "bp") -> None:
    with open(path, "a") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"message": f"{tag} {i}", "pad": PAD}) + "\n")


def _numbers(hub: HubProcess, q: str) -> Counter[int]:
    return Counter(int(e["message"].split()[1]) for e in hub.search_all(q))


def test_backpressure_small_spool_hub_down_nothing_lost(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    total = 30_000  # ~5 MB of lines against a 256 KiB spool
    _write_lines(logs / "app.log", 0, total)
    hub = HubProcess(f"sqlite:///{tmp_path}/hub.db", log_path=tmp_path / "hub.log")  # not started: down
    mport = free_port()
    cap = 256 << 10
    cfg = write_config(
        tmp_path / "agent.toml",
        [{"paths": [str(logs / "*.log")], "format": "json", "service": "bp"}],
        hub=hub.url,
        token=hub.ingest_token,
        state_dir=str(tmp_path / "state"),
        metrics_address=f"127.0.0.1:{mport}",
        spool_max_bytes=cap,
        spool_segment_bytes=32 << 10,
        batch_max_bytes=32 << 10,
        poll_interval_ms=50,
        backoff_initial_ms=50,
        backoff_max_ms=500,
    )
    agent = AgentProcess(cfg, tmp_path / "agent.log", mport).start()
    try:
        _wait(lambda: agent.metrics()["obshub_agent_spool_full"] == 1, 30, "the spool to fill")
        samples = []
        for _ in range(10):
            m = agent.metrics()
            samples.append((m["obshub_agent_lines_read_total"], m["obshub_agent_spool_bytes"], agent.rss_bytes()))
            time.sleep(0.2)
        read = [s[0] for s in samples]
        assert read[0] == read[-1] and read[-1] < total / 2, "reading is paused, not buffered in memory"
        assert max(s[1] for s in samples) <= cap + (64 << 10), "spool stays at its cap (+ one record)"
        assert max(s[2] for s in samples) < 64 << 20, "agent RSS under 64 MiB"
        m = agent.metrics()
        assert m["obshub_agent_backpressure_total"] >= 1
        assert m[f'obshub_agent_file_lag_bytes{{file="{logs / "app.log"}"}}'] > 4_000_000
        hub.start()
        _wait(
            lambda: agent.metrics()['obshub_agent_events_shipped_total{outcome="accepted"}'] >= total,
            120,
            "every line to reach the hub",
        )
        seen = _numbers(hub, "service:bp")
        assert sorted(seen) == list(range(total)) and set(seen.values()) == {1}
        m = agent.metrics()
        assert m["obshub_agent_spool_full"] == 0 and m["obshub_agent_backpressure_seconds_total"] > 1
        assert agent.rss_bytes() < 64 << 20
        assert agent.stop() == 0
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
        hub.stop()


def test_bad_token_then_sighup_fix_keeps_offsets(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    hub = HubProcess(f"sqlite:///{tmp_path}/hub.db", log_path=tmp_path / "hub.log").start()
    mport = free_port()
    inputs = [{"paths": [str(logs / "a.log")], "format": "json", "service": "ops"}]
    common = dict(
        hub=hub.url,
        state_dir=str(tmp_path / "state"),
        metrics_address=f"127.0.0.1:{mport}",
        poll_interval_ms=50,
        backoff_initial_ms=50,
        backoff_max_ms=250,
    )
    cfg = write_config(tmp_path / "agent.toml", inputs, token="wrong-token", **common)
    _write_lines(logs / "a.log", 0, 100, "ops")
    agent = AgentProcess(cfg, tmp_path / "agent.log", mport).start()
    try:
        _wait(lambda: agent.metrics()["obshub_agent_auth_failures_total"] >= 2, 30, "401s from the hub")
        assert agent.metrics()["obshub_agent_spool_unacked_bytes"] > 0  # kept, not dropped
        assert "check `token`" in agent.log()
        # fix the token, add a label and a second input; SIGHUP
        inputs[0]["labels"] = {"stage": "two"}
        inputs.append({"paths": [str(logs / "b.log")], "format": "text", "service": "ops"})
        write_config(tmp_path / "agent.toml", inputs, token=hub.ingest_token, **common)
        agent.signal(signal.SIGHUP)
        _wait(lambda: len(hub.search_all("service:ops")) >= 100, 30, "delivery after the token fix")
        _write_lines(logs / "a.log", 100, 10, "ops")
        (logs / "b.log").write_text("ops 500 from the new input\n")
        _wait(lambda: len(hub.search_all("service:ops")) >= 111, 30, "lines after reload")
        events = hub.search_all("service:ops")
        seen = Counter(int(e["message"].split()[1]) for e in events)
        assert sorted(seen) == [*range(110), 500] and set(seen.values()) == {1}, "offsets kept across SIGHUP"
        labelled = {int(e["message"].split()[1]) for e in events if e["attrs"].get("stage") == "two"}
        assert set(range(100, 110)) <= labelled
        # graceful stop: checkpoints saved at the end of both files; a restart re-reads nothing
        assert agent.stop() == 0
        agent = AgentProcess(cfg, tmp_path / "agent.log", mport).start()
        time.sleep(1.5)
        m = agent.metrics()
        assert m["obshub_agent_lines_read_total"] == 0 and m["obshub_agent_events_spooled_total"] == 0
        assert agent.stop() == 0
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
        hub.stop()


def test_sigterm_with_hub_down_exits_promptly_and_keeps_spool(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    _write_lines(logs / "c.log", 0, 500, "term")
    hub = HubProcess(f"sqlite:///{tmp_path}/hub.db", log_path=tmp_path / "hub.log")
    mport = free_port()
    cfg = write_config(
        tmp_path / "agent.toml",
        [{"paths": [str(logs / "c.log")], "format": "json", "service": "term"}],
        hub=hub.url,
        token=hub.ingest_token,
        state_dir=str(tmp_path / "state"),
        metrics_address=f"127.0.0.1:{mport}",
        poll_interval_ms=50,
        shutdown_timeout_s=1.0,
        backoff_initial_ms=50,
        backoff_max_ms=300,
    )
    agent = AgentProcess(cfg, tmp_path / "agent.log", mport).start()
    try:
        _wait(lambda: agent.metrics()["obshub_agent_events_spooled_total"] >= 500, 20, "lines spooled")
        t0 = time.monotonic()
        assert agent.stop() == 0
        assert time.monotonic() - t0 < 5
        hub.start()
        agent = AgentProcess(cfg, tmp_path / "agent.log", mport).start()
        _wait(lambda: len(hub.search_all("service:term")) >= 500, 30, "spooled lines shipped after restart")
        assert agent.metrics()["obshub_agent_lines_read_total"] == 0  # from the spool, not re-read
        assert agent.stop() == 0
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
        hub.stop()


def test_hub_limits_split_reject_and_key_clashes(tmp_path: Path) -> None:
    """413 -> the batch is split; lines the hub refuses are counted, logged and not retried; a line's
    own `file` key does not clash with the agent's attrs.file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = []
    for i in range(2000):
        ev: dict = {"message": f"lim {i}", "pad": PAD}
        if i % 100 == 7:
            ev["file"] = f"report-{i}.pdf"  # the app's own key
        lines.append(json.dumps(ev))
    lines.insert(500, json.dumps({"message": "lim 9001", "level": "loud"}))  # hub: unknown level -> rejected
    lines.insert(900, json.dumps({"message": "lim 9002 " + "z" * 30_000}))  # over the hub's body limit alone
    (logs / "app.log").write_text("\n".join(lines) + "\n")
    hub = HubProcess(
        f"sqlite:///{tmp_path}/hub.db", log_path=tmp_path / "hub.log", env={"OBSHUB_MAX_BODY_BYTES": "20000"}
    ).start()
    mport = free_port()
    cfg = write_config(
        tmp_path / "agent.toml",
        [{"paths": [str(logs / "app.log")], "format": "json", "service": "lim", "labels": {"pad": "label-loses"}}],
        hub=hub.url,
        token=hub.ingest_token,
        state_dir=str(tmp_path / "state"),
        compression="gzip",
        metrics_address=f"127.0.0.1:{mport}",
        batch_max_bytes=256 << 10,
        poll_interval_ms=50,
    )
    agent = AgentProcess(cfg, tmp_path / "agent.log", mport).start()
    try:
        key = 'obshub_agent_events_shipped_total{outcome="%s"}'
        _wait(
            lambda: agent.metrics()[key % "accepted"] + agent.metrics()[key % "rejected"] >= 2002,
            60,
            "every line answered",
        )
        m = agent.metrics()
        assert m[key % "rejected"] == 2 and m[key % "accepted"] == 2000
        events = hub.search_all("service:lim")
        seen = Counter(int(e["message"].split()[1]) for e in events)
        assert sorted(seen) == list(range(2000)) and set(seen.values()) == {1}
        clash = [e for e in events if "report-" in str(e["attrs"].get("file"))]
        assert len(clash) == 20 and all(e["attrs"]["agent.file"] == str(logs / "app.log") for e in clash)
        assert all(e["attrs"]["pad"] == PAD for e in events)  # the line's own key wins over a label
        log = agent.log()
        assert "hub rejected event" in log and "unknown level" in log
        assert "refused a single event" in log
        assert agent.metrics()["obshub_agent_spool_unacked_bytes"] == 0  # nothing retried forever
    finally:
        agent.stop()
        hub.stop()

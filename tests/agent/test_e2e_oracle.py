"""Must-show: nothing lost, nothing stored twice, against a real hub subprocess.

A writer appends numbered JSON lines while the test rotates the file by rename and by
copytruncate (the copy, `app.log.1`, inside the agent's glob `app.log*`: a new inode holding lines
already shipped, and lines not read yet), SIGKILLs the agent, and stops and SIGKILLs the hub. At
the end the hub's store must hold every number exactly once. Run once more with two hubs on one
store (`hub.urls`): the second is SIGKILLed mid-run and the agent keeps shipping to the first.
CI size by default; a long soak with
`OBSHUB_SOAK=1 OBSHUB_SOAK_LINES=2000000 pytest tests/agent -m slow -k soak`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentproc import AgentProcess, write_config
from tests.hubproc import HubProcess, free_port, wait_until

PAD = "x" * 120  # ~170-byte lines, a typical SDK line


class Writer(threading.Thread):
    """An app logging numbered lines with O_APPEND, reopening its file after a rename rotation."""

    def __init__(self, logs: Path, total: int, rate: float, holds: tuple[int, ...] = ()) -> None:
        super().__init__(daemon=True)
        # Lines from each of `holds` on wait for its event in `released`: a step that needs lines
        # still coming after it (the second hub's steps: batches must reach it) cannot find the
        # writer done, however slow a loaded machine makes the steps before it.
        self.holds = [(at, threading.Event()) for at in holds]
        self.released = [ev for _, ev in self.holds]
        self.logs = logs
        self.app = logs / "app.log"
        self.total = total
        self.rate = rate
        self.next = 0
        self.lock = threading.Lock()  # held while writing a burst; ops take it to act between bursts
        self.fd = os.open(self.app, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.rotations = 0

    def run(self) -> None:
        burst = 50
        t0 = time.monotonic()
        while self.next < self.total:
            for at, ev in self.holds:
                if self.next >= at and not ev.is_set():
                    ev.wait()
                    t0 = time.monotonic() - self.next / self.rate  # the time held is not owed: no burst
            with self.lock:
                n = min(burst, self.total - self.next)
                data = "".join(
                    json.dumps({"message": f"seq {i}", "seq": i, "pad": PAD}) + "\n"
                    for i in range(self.next, self.next + n)
                )
                raw = data.encode()
                if (self.next // burst) % 5 == 0:  # every 5th burst lands in two writes, mid-line:
                    cut = len(raw) // 2 + 7  # the agent must hold the partial line until its end
                    os.write(self.fd, raw[:cut])
                    time.sleep(0.002)
                    os.write(self.fd, raw[cut:])
                else:
                    os.write(self.fd, raw)
                self.next += n
            ahead = self.next / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    def close(self) -> None:
        """After the last step: rotations may still run once every line is written."""
        with self.lock:
            os.close(self.fd)

    def _shift(self) -> None:
        """app.log.2 -> app.log.3 ..., the oldest deleted (deleted files must be finished and closed)."""
        oldest = self.logs / "app.log.3"
        if oldest.exists():
            oldest.unlink()
        for i in (2, 1):
            if (self.logs / f"app.log.{i}").exists():
                os.rename(self.logs / f"app.log.{i}", self.logs / f"app.log.{i + 1}")

    def rename_rotate(self) -> None:
        """logrotate's default `create` mode: shift app.log.N, delete the oldest, app reopens."""
        with self.lock:
            self.rotations += 1
            self._shift()
            os.rename(self.app, self.logs / "app.log.1")
            # the app writes a little more to the renamed file before it reopens
            extra = min(20, self.total - self.next)
            os.write(
                self.fd,
                "".join(
                    json.dumps({"message": f"seq {i}", "seq": i, "pad": PAD}) + "\n"
                    for i in range(self.next, self.next + extra)
                ).encode(),
            )
            self.next += extra
            os.close(self.fd)
            self.fd = os.open(self.app, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def copytruncate(self) -> None:
        """logrotate `copytruncate`: shift app.log.N, copy app.log to app.log.1 (a new inode, inside
        the agent's glob), truncate app.log; the app keeps writing to it (O_APPEND: from 0). Not
        waiting for the agent: lines it has not read yet exist only in the copy and must be read
        from there, the lines it has read must not be read again. (Lines written between the copy
        and the truncate would exist nowhere, for every tailer; the lock keeps the writer out.)"""
        with self.lock:
            self.rotations += 1
            self._shift()
            shutil.copyfile(self.app, self.logs / "app.log.1")
            os.truncate(self.app, 0)


def _collect(hub: HubProcess) -> Counter[int]:
    seen: Counter[int] = Counter()
    for e in hub.search_all("service:oracle"):
        seen[int(e["message"].split()[1])] += 1
    return seen


def run_oracle(tmp_path: Path, total: int, rate: float, log: list[str], *, hubs: int = 1) -> dict[str, Any]:
    logs = tmp_path / "logs"
    logs.mkdir()
    hub = HubProcess(f"sqlite:///{tmp_path}/hub.db", log_path=tmp_path / "hub.log").start()
    # a second hub on the same store (its own project; the agent's token is the first's)
    spare = (
        HubProcess(f"sqlite:///{tmp_path}/hub.db", project="spare", log_path=tmp_path / "hub2.log").start()
        if hubs == 2
        else None
    )
    mport = free_port()
    spare_batches: list[float] = []
    cfg = write_config(
        tmp_path / "agent.toml",
        [{"paths": [str(logs / "app.log*")], "format": "json", "service": "oracle"}],
        hub={"urls": [hub.url, spare.url]} if spare else hub.url,
        token=hub.ingest_token,
        host="oracle-host",
        state_dir=str(tmp_path / "state"),
        metrics_address=f"127.0.0.1:{mport}",
        poll_interval_ms=50,
        discover_interval_ms=200,
        close_removed_after_ms=1000,
        batch_max_age_ms=200,
        backoff_initial_ms=50,
        backoff_max_ms=1000,
        batch_max_bytes=256 << 10,
    )
    try:
        agent = AgentProcess(cfg, tmp_path / "agent.log", mport).start()
    except BaseException:  # e.g. a config the agent refuses: no hub left running
        for h in (hub, spare):
            if h:
                h.stop()
        raise
    writer = Writer(logs, total, rate, holds=(total // 2, total * 4 // 5) if hubs == 2 else ())
    writer.start()
    ops = 0

    def step(name: str, fn: Callable[[], None]) -> None:
        nonlocal ops
        log.append(f"{time.strftime('%H:%M:%S')} {name} at seq {writer.next}")
        fn()
        ops += 1
        time.sleep(0.7)

    def agent_sigkill_with_rotation() -> None:
        agent.kill()
        writer.rename_rotate()  # rotation while the agent is down
        time.sleep(0.3)
        agent.start()

    def agent_sigkill_with_copytruncate() -> None:
        agent.kill()
        time.sleep(0.2)
        writer.copytruncate()  # the copy's fingerprint and offset come from checkpoints.json
        time.sleep(0.3)
        agent.start()

    def hub_down() -> None:
        hub.stop()
        time.sleep(1.5)  # agent spools and retries meanwhile
        writer.rename_rotate()
        hub.start()

    def both_sigkilled() -> None:
        agent.kill()
        hub.kill()
        time.sleep(0.3)
        hub.start()
        agent.start()

    def hub_batches(h: HubProcess) -> float:
        return agent.metrics().get(f'obshub_agent_hub_batches_sent_total{{url="{h.url}"}}', 0.0)

    def spare_sigkilled() -> None:
        """The agent spreads over both hubs; SIGKILL one: it keeps shipping to the other."""
        assert spare is not None
        wait_until(lambda: hub_batches(spare) > 0, 10, "batches to the second hub")
        spare.kill()
        before = hub_batches(hub)
        writer.released[0].set()  # lines from the half on: batches while the second hub is dead
        wait_until(lambda: hub_batches(hub) > before + 3, 10, "batches to the first hub while the second is dead")
        spare_batches.append(hub_batches(spare))

    def spare_restarted() -> None:
        assert spare is not None
        spare.start()
        writer.released[1].set()  # the last fifth of the lines: batches for both hubs
        wait_until(lambda: hub_batches(spare) > spare_batches[0], 15, "batches to the restarted second hub")

    cycle = [
        ("rename rotation", writer.rename_rotate),
        ("agent SIGKILL + rotation while down", agent_sigkill_with_rotation),
        ("copytruncate", writer.copytruncate),
        ("agent SIGKILL + copytruncate while down", agent_sigkill_with_copytruncate),
        ("hub stop/start + rotation while down", hub_down),
        ("agent and hub SIGKILL", both_sigkilled),
        ("copytruncate", writer.copytruncate),
    ]
    if spare:
        cycle[1:1] = [("second hub SIGKILL", spare_sigkilled)]
        cycle[4:4] = [("second hub restarted", spare_restarted)]
    try:
        time.sleep(0.5)
        i = 0
        while writer.is_alive() or i < len(cycle):  # at least one full cycle
            step(*cycle[i % len(cycle)])
            i += 1
        writer.join()

        def drained() -> bool:  # everything read, spooled and acknowledged (cheap: no search)
            m = agent.metrics()
            return m["obshub_agent_spool_unacked_bytes"] == 0 and not any(
                v for k, v in m.items() if k.startswith("obshub_agent_file_lag_bytes")
            )

        wait_until(lambda: drained() and (time.sleep(1.0) or drained()), 120 + total / 2000, "the agent to drain")
        seen = _collect(hub)
        metrics = agent.metrics()
        rc = agent.stop()
        return {
            "seen": seen,
            "metrics": metrics,
            "rc": rc,
            "ops": ops,
            "rotations": writer.rotations,
            "agent_log": agent.log(),
        }
    finally:
        writer.close()
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
        hub.stop()
        if spare:
            spare.stop()


def _assert_exactly_once(res: dict[str, Any], total: int) -> None:
    seen = res["seen"]
    missing = sorted(set(range(total)) - set(seen))
    twice = sorted(k for k, v in seen.items() if v > 1)
    assert not missing, f"{len(missing)} lines lost, first {missing[:20]}\n{res['agent_log'][-4000:]}"
    assert not twice, f"{len(twice)} lines stored twice, first {twice[:20]}"
    assert len(seen) == total and sum(seen.values()) == total
    assert res["rc"] == 0  # graceful SIGTERM exit


@pytest.mark.parametrize("hubs", [1, 2], ids=["one-hub", "two-hubs-one-killed"])
def test_oracle_rotation_kill_hub_restart(tmp_path: Path, hubs: int) -> None:
    total = int(os.environ.get("OBSHUB_ORACLE_LINES", "20000"))
    log: list[str] = []
    # Two hubs: the second hub's steps need lines still coming after them; the writer holds at
    # half and at four fifths until those steps release it (run_oracle), whatever the load.
    res = run_oracle(tmp_path, total, rate=2500, log=log, hubs=hubs)
    print("\n".join(log))
    print({k: v for k, v in res["metrics"].items() if "lag" not in k})
    _assert_exactly_once(res, total)
    assert res["ops"] >= 7 and res["rotations"] >= 5, log
    # the counters restart with each agent process: what happened is read from its log
    assert "hub unavailable" in res["agent_log"]  # the hub was down: the agent retried (and lost nothing)
    assert "truncated" in res["agent_log"]
    assert "a copy of a file already read" in res["agent_log"]  # copytruncate's app.log.1, inside the glob
    if hubs == 2:  # the dead second hub was skipped: the batch went to the first at once
        assert "the batch goes to the next hub" in res["agent_log"]


@pytest.mark.slow
def test_oracle_soak(tmp_path: Path) -> None:
    total = int(os.environ.get("OBSHUB_SOAK_LINES", "1000000"))
    log: list[str] = []
    res = run_oracle(tmp_path, total, rate=float(os.environ.get("OBSHUB_SOAK_RATE", "10000")), log=log)
    _assert_exactly_once(res, total)

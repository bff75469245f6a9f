"""`hub.urls` when an answer is lost: the first hub stores a batch but its answer never reaches
the agent (a relay in front of it forwards each request, then drops the connection), so the agent
sends the same batch to the second hub, which finds its events already stored. Every line is
stored exactly once, the duplicates are counted, the spool drains: the case a resend to another
hub must survive (ids are deterministic, the store keeps one event per id)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.agent.agentproc import AgentProcess, write_config
from tests.hubproc import HubProcess, free_port, wait_until

LINES = 3000


class AnswerEater:
    """Forwards every POST to `upstream`, then closes the connection without an answer."""

    def __init__(self, upstream: str) -> None:
        self.stored: list[int] = []  # status of each forwarded request (the hub's answer, eaten)
        stored = self.stored

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                keep = ("Authorization", "Content-Type", "Content-Encoding", "X-Obshub-Sent-At")
                headers = {k: self.headers[k] for k in keep if self.headers[k]}
                r = httpx.post(f"{upstream}{self.path}", content=body, headers=headers, timeout=30)
                stored.append(r.status_code)
                self.close_connection = True  # no status line: the agent sees the connection close

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_batch_stored_by_a_hub_whose_answer_was_lost_is_resent_and_stored_once(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/hub.db"
    first = HubProcess(store, log_path=tmp_path / "hub1.log").start()
    second = HubProcess(store, project="spare", log_path=tmp_path / "hub2.log").start()
    eater = AnswerEater(first.url)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(json.dumps({"message": f"seq {i}"}) + "\n" for i in range(LINES)))
    mport = free_port()
    cfg = write_config(
        tmp_path / "agent.toml",
        [{"paths": [str(logs / "app.log")], "format": "json", "service": "failover"}],
        hub={"urls": [eater.url, second.url]},
        token=first.ingest_token,
        host="failover-host",
        state_dir=str(tmp_path / "state"),
        metrics_address=f"127.0.0.1:{mport}",
        poll_interval_ms=50,
        batch_max_age_ms=100,
        batch_max_bytes=8 << 10,  # ~200 lines a batch: ~15 batches
        read_chunk_bytes=8 << 10,
        backoff_initial_ms=100,
        backoff_max_ms=300,  # the eater is tried again soon, so several batches meet it
    )
    agent = AgentProcess(cfg, tmp_path / "agent.log", mport)
    try:
        agent.start()

        def drained() -> bool:
            m = agent.metrics()
            return m["obshub_agent_events_spooled_total"] == LINES and m["obshub_agent_spool_unacked_bytes"] == 0

        wait_until(drained, 60, "the agent to ship every line")
        m = agent.metrics()
        assert agent.stop() == 0
        seen = Counter(int(e["message"].split()[1]) for e in first.search_all("service:failover"))
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
        eater.close()
        first.stop()
        second.stop()

    assert eater.stored and set(eater.stored) == {200}, eater.stored  # the first hub did store them
    assert set(seen) == set(range(LINES)), f"lost {sorted(set(range(LINES)) - set(seen))[:20]}"
    assert max(seen.values()) == 1, "a line stored twice"
    # the batches the first hub had stored came back as duplicates from the second
    assert m['obshub_agent_events_shipped_total{outcome="duplicate"}'] > 0, m
    assert m[f'obshub_agent_hub_errors_total{{url="{eater.url}"}}'] >= len(eater.stored) // 2
    assert m[f'obshub_agent_hub_batches_sent_total{{url="{eater.url}"}}'] == 0
    assert m[f'obshub_agent_hub_up{{url="{eater.url}"}}'] == 0
    assert (
        m['obshub_agent_events_shipped_total{outcome="accepted"}']
        + m['obshub_agent_events_shipped_total{outcome="duplicate"}']
        == LINES
    )

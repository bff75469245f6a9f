"""Scale out: three `obshub serve` processes on one OpenSearch node take ingest together.

Clients spread NDJSON batches round-robin over the three hubs (each batch goes to the next hub
until one answers 2xx, with the same event ids), and an obshub-agent tails a file with
`hub.urls` naming all three. Mid-run one hub is SIGKILLed and later restarted on its port. Then:
every acknowledged event is stored exactly once (counted by id), no request got a 5xx, the only
failed requests are the killed hub's refused/dropped connections, and the agent kept shipping to
the other two while it was down and shipped every line once.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.agent.agentproc import AgentProcess, write_config
from tests.hubproc import HubProcess, free_port, wait_until
from tests.opensearch_node import drop_prefix

BATCH = 100  # events per request
CLIENTS = 3
AGENT_LINES = 6000


class Spreader(threading.Thread):
    """A client sending batches round-robin; a failed batch is sent again, to the next hub."""

    def __init__(self, n: int, urls: list[str], token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.n, self.urls, self.token, self.stop = n, urls, token, stop
        self.acked: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.failed: list[tuple[str, str]] = []  # (url, exception) of requests without an answer
        self.duplicates = 0

    def run(self) -> None:
        pos = self.n
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/x-ndjson"}
        with httpx.Client(timeout=30, headers=headers) as c:
            b = 0
            while not self.stop.is_set():
                ids = [f"c{self.n}-b{b}-e{k}" for k in range(BATCH)]
                body = "\n".join(json.dumps({"id": i, "service": "scale", "message": f"scale {i}"}) for i in ids)
                while True:
                    url = self.urls[pos % len(self.urls)]
                    pos += 1
                    try:
                        r = c.post(f"{url}/api/v1/ingest", content=body)
                    except httpx.TransportError as exc:
                        self.failed.append((url, type(exc).__name__))
                        time.sleep(0.02)
                        continue
                    self.statuses[r.status_code] += 1
                    if r.status_code == 200:
                        self.acked += ids
                        self.duplicates += int(r.json().get("duplicates", 0))
                        break
                    time.sleep(0.1)  # 429 (and, failing the test, anything else): the next hub
                b += 1


def _stored(hub: HubProcess, q: str, expected: int) -> Counter[str]:
    """Ids of the events matching `q`, once at least `expected` are searchable (refresh: ~1 s)."""
    seen: Counter[str] = Counter()

    def enough() -> bool:
        nonlocal seen
        seen = Counter(e["id"] for e in hub.search_all(q))
        return sum(seen.values()) >= expected

    with contextlib.suppress(AssertionError):  # the caller's assertions say what is missing
        wait_until(enough, 60, f"{expected} events for {q!r}", every=1.0)
    return seen


@pytest.mark.opensearch
def test_three_hubs_one_sigkilled_store_each_acked_event_once(opensearch_url: str, tmp_path: Path) -> None:
    store = f"{opensearch_url}{'&' if '?' in opensearch_url else '?'}prefix=scale{time.time_ns() % 10**9}"
    hubs = [HubProcess(store, project=f"p{i}", log_path=tmp_path / f"hub{i}.log") for i in range(3)]
    urls = [h.url for h in hubs]
    stop = threading.Event()
    clients = [Spreader(n, urls, hubs[0].ingest_token, stop) for n in range(CLIENTS)]
    logs = tmp_path / "logs"
    logs.mkdir()
    mport = free_port()
    cfg = write_config(
        tmp_path / "agent.toml",
        [{"paths": [str(logs / "app.log")], "format": "json", "service": "agent"}],
        hub={"urls": urls},
        token=hubs[0].ingest_token,
        host="scale-host",
        state_dir=str(tmp_path / "state"),
        metrics_address=f"127.0.0.1:{mport}",
        poll_interval_ms=50,
        batch_max_age_ms=100,
        batch_max_bytes=16 << 10,  # ~100 lines a batch: many batches, spread over the hubs
        backoff_initial_ms=100,
        backoff_max_ms=2000,
    )
    agent = AgentProcess(cfg, tmp_path / "agent.log", mport)
    victim = hubs[1]

    def agent_batches(url: str) -> float:
        return agent.metrics().get(f'obshub_agent_hub_batches_sent_total{{url="{url}"}}', 0.0)

    def write_lines(lo: int, hi: int) -> None:
        with open(logs / "app.log", "a") as f:
            for i in range(lo, hi):
                f.write(json.dumps({"message": f"seq {i}", "seq": i}) + "\n")

    try:
        for h in hubs:
            h.start(timeout=60)
        agent.start()
        for c in clients:
            c.start()
        third = AGENT_LINES // 3
        write_lines(0, third)
        time.sleep(3)
        wait_until(lambda: all(agent_batches(u) > 0 for u in urls), 20, "agent batches to every hub")

        victim.kill()
        killed_at = time.monotonic()
        others = [u for u in urls if u != victim.url]
        before = {u: agent_batches(u) for u in others}
        down_count = agent_batches(victim.url)
        write_lines(third, 2 * third)  # while the victim is dead: the agent ships to the other two
        wait_until(
            lambda: sum(agent_batches(u) - before[u] for u in others) >= 5,
            20,
            "agent batches to the live hubs while one is dead",
        )
        assert agent_batches(victim.url) == down_count
        time.sleep(max(0.0, 3 - (time.monotonic() - killed_at)))
        victim.start(timeout=60)
        write_lines(2 * third, AGENT_LINES)
        time.sleep(3)
        stop.set()
        for c in clients:
            c.join(60)
        assert not any(c.is_alive() for c in clients)
        wait_until(lambda: agent.metrics()["obshub_agent_spool_unacked_bytes"] == 0, 60, "the agent to drain")
        m = agent.metrics()
        assert agent.stop() == 0
    finally:
        stop.set()
        if agent.proc and agent.proc.poll() is None:
            agent.kill()
        for h in hubs:
            h.stop()

    try:
        statuses: Counter[int] = sum((c.statuses for c in clients), Counter())
        failed = [f for c in clients for f in c.failed]
        assert not [s for s in statuses if s >= 500], statuses
        assert {u for u, _ in failed} <= {victim.url}, failed  # only the killed hub's connections
        assert failed, "no request met the killed hub"
        acked = [i for c in clients for i in c.acked]
        assert len(acked) == len(set(acked)) and len(acked) >= 3 * BATCH * CLIENTS

        reader = hubs[0]
        reader.start(timeout=60)
        try:
            seen = _stored(reader, "service:scale", len(acked))
            missing = set(acked) - set(seen)
            twice = {i: n for i, n in seen.items() if n > 1}
            assert not missing, f"{len(missing)} acknowledged events not stored, e.g. {sorted(missing)[:5]}"
            assert not twice, f"{len(twice)} events stored more than once, e.g. {list(twice.items())[:5]}"
            assert set(seen) == set(acked)

            _stored(reader, "service:agent", AGENT_LINES)  # wait until searchable
            seqs = Counter(int(ev["message"].split()[1]) for ev in reader.search_all("service:agent"))
            assert set(seqs) == set(range(AGENT_LINES)), sorted(set(range(AGENT_LINES)) - set(seqs))[:20]
            assert max(seqs.values()) == 1, "an agent line stored twice"
        finally:
            reader.stop()
        assert m[f'obshub_agent_hub_errors_total{{url="{victim.url}"}}'] >= 1
        assert all(m[f'obshub_agent_hub_batches_sent_total{{url="{u}"}}'] > 0 for u in urls)
        log = agent.log()
        assert "the batch goes to the next hub" in log, log[-3000:]
        # duplicates > 0: a batch the killed hub had stored before its answer was lost, resent
        print({"acked": len(acked), "statuses": dict(statuses), "failed": Counter(e for _, e in failed)})
        print({"duplicates": sum(c.duplicates for c in clients), "agent": {k: v for k, v in m.items() if "hub_" in k}})
    finally:
        drop_prefix(store)

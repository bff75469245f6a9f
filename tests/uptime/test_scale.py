"""What keeps probes on time with many checks (bench/checks.py measures it at 1,000 and 10,000):
probes due now go before catch-up probes (a hub's start makes every check's current slot due at
once), the pool grows with the load, and ticks fall on whole seconds, where slots open."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from obshub.digest import Scrubber
from obshub.settings import Settings, load_settings
from obshub.store import Store, open_store
from obshub.telemetry import Telemetry
from obshub.uptime.scheduling import MAX_PARALLEL, Uptime, register
from tests.hubproc import make_project


class _Log(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # the stdlib's name
        self.paths.append(self.path)
        time.sleep(0.05)  # a probe takes a while: the queue builds up
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        pass


@pytest.fixture
def target() -> Iterator[str]:
    _Log.paths = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class Parts:
    settings: Settings
    store: Store
    telemetry: Telemetry = field(default_factory=Telemetry.create)
    scrubber: Scrubber = field(default_factory=Scrubber)


def _hub(tmp_path: Path, tables: str) -> Parts:
    url = f"sqlite:///{tmp_path}/obshub.db"
    make_project(url, "default")
    config = tmp_path / "obshub.toml"
    config.write_text(tables)
    store = open_store(url)
    store.open()
    return Parts(load_settings({"OBSHUB_CONFIG": str(config)}, store=url), store)


def test_probes_due_now_go_before_catch_up_probes(tmp_path: Path, target: str) -> None:
    tables = "".join(f'[[checks]]\nname = "old{i}"\ntarget = "{target}/old{i}"\ninterval_s = 3600\n' for i in range(12))
    tables += f'[[checks]]\nname = "now"\ntarget = "{target}/now"\ninterval_s = 3600\n'
    hub = _hub(tmp_path, tables)
    uptime = Uptime(hub, max_parallel=1)
    try:
        now_check = next(c for _, c in uptime.checks() if c.name == "now")
        t = now_check.slot_start(now_check.slot(time.time())) + 0.2  # its slot just opened; the others' long ago
        olds = [c for _, c in uptime.checks() if c.name != "now"]
        assert all(t - c.slot_start(c.slot(t)) > 2 for c in olds), "a crc offset fell on the same second"
        futures = uptime.tick(t)  # "now" is submitted last
        assert len(futures) == 13 and all(f.result(30) for f in futures)
        assert _Log.paths.index("/now") <= 1, _Log.paths  # at most the one already running went first
    finally:
        uptime.close()
        hub.store.close()


def test_pool_grows_with_the_load(tmp_path: Path, target: str) -> None:
    tables = "".join(f'[[checks]]\nname = "c{i}"\ntarget = "{target}/c{i}"\ninterval_s = 5\n' for i in range(100))
    hub = _hub(tmp_path, tables)
    uptime = Uptime(hub)
    try:
        uptime.checks()
        assert uptime.pool.size == 40  # 100 checks every 5 s = 20 probes/s, 2 s of them
        assert MAX_PARALLEL == 16
    finally:
        uptime.close()
        hub.store.close()


def test_ticks_fall_on_whole_seconds(tmp_path: Path) -> None:
    hub = _hub(tmp_path, "")
    scheduler = BackgroundScheduler()
    uptime = register(scheduler, hub)
    try:
        job = scheduler.get_job("uptime")
        first = job.trigger.get_next_fire_time(None, job.trigger.start_date)
        assert first.microsecond == 0
    finally:
        uptime.close()
        hub.store.close()

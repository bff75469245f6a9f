"""A live hub for the Checks page and status page tests: its real scheduler probes two local
targets every 5 s (`shop`: public, its server's answer switchable; `internal`: private, nothing
listens), with results of past days written beside them (3 and 10 days ago)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from obshub.uptime.config import parse_check
from obshub.uptime.model import ProbeResult
from obshub.uptime.writes import record
from tests.factories import now_us
from tests.hubproc import LiveHub, free_port, wait_until

DAY_US = 86_400_000_000


class _Switch(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200

    def do_GET(self) -> None:  # the stdlib's name
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        pass


@dataclass
class Site:
    hub: LiveHub
    shop: str  # the public check's target
    secret: str  # the private check's target
    server: ThreadingHTTPServer

    def answer(self, status: int) -> None:
        _Switch.status = status

    def results(self, q: str) -> list[dict[str, Any]]:
        return self.hub.search_all(f"kind:check {q}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("checks-web")
    _Switch.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Switch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    shop = f"http://127.0.0.1:{server.server_address[1]}/shop-health"
    secret = f"http://127.0.0.1:{free_port()}/internal-admin"  # nothing listens: down
    config = d / "obshub.toml"
    config.write_text(
        'status_pages = "test"\n\n'
        f'[[checks]]\nname = "shop"\ntarget = "{shop}"\ninterval_s = 5\npublic = true\nproject = "test"\n\n'
        f'[[checks]]\nname = "internal"\ntarget = "{secret}"\ninterval_s = 5\nproject = "test"\n'
    )
    hub = LiveHub(f"sqlite:///{d}/obshub.db", config=config).start()
    # Past days: 3 days ago all up, 10 days ago one of two down; none in between.
    now = now_us()
    check = parse_check({"name": "shop", "target": shop, "interval_s": 5})
    for slot, (days, up) in enumerate([(3, True), (3, True), (10, True), (10, False)]):
        record(hub.store, hub.project_id, check, slot, ProbeResult(up, "GET old", 20.0, 200), now - days * DAY_US)
    wait_until(lambda: site_ready(hub), 30, "both checks probed")
    yield Site(hub, shop, secret, server)
    hub.stop()
    server.shutdown()
    server.server_close()
    thread.join(5)


def site_ready(hub: LiveHub) -> bool:
    return bool(hub.search_all("kind:check name:shop attrs.up:true", **{"from": "-1m"})) and bool(
        hub.search_all("kind:check name:internal attrs.up:false")
    )

"""Real targets for uptime probes: a stdlib HTTP server and a listening TCP socket on free
127.0.0.1 ports, each stopped by its fixture; and the hubs that probe them, which must allow API
checks to reach loopback (`checks_allow_networks`: refused by default, docs/uptime.md)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.hubproc import LiveHub, free_port

# Every target here is a local server: the hubs of these tests allow loopback, explicitly.
LOOPBACK = "127.0.0.0/8"


class _Handler(BaseHTTPRequestHandler):
    # path -> (status, body, delay before answering in s)
    routes: ClassVar[dict[str, tuple[int, bytes, float]]] = {
        "/ok": (200, b"all systems nominal", 0.0),
        "/created": (201, b"made", 0.0),
        "/fail": (503, b"maintenance", 0.0),
        "/redirect": (302, b"", 0.0),
        "/slow": (200, b"late", 1.5),
    }

    def do_GET(self) -> None:  # the stdlib's name
        status, body, delay = self.routes.get(self.path, (404, b"no such page", 0.0))
        time.sleep(delay)
        try:
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/ok")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the prober timed out and went away

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        pass


@pytest.fixture
def web() -> Iterator[str]:
    """Base URL of a live HTTP server (routes in `_Handler.routes`)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def listener() -> Iterator[int]:
    """Port of a listening TCP socket (connections are accepted by the kernel backlog)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connections are refused."""
    return free_port()


@pytest.fixture
def hub(store_url: str) -> Iterator[LiveHub]:
    """The root conftest's `hub` (each store backend), with API checks allowed to reach loopback."""
    h = LiveHub(store_url, checks_allow_networks=LOOPBACK).start()
    yield h
    h.stop()


@pytest.fixture
def sqlite_hub(tmp_path: Path) -> Iterator[LiveHub]:
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", checks_allow_networks=LOOPBACK).start()
    yield h
    h.stop()

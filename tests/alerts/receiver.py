"""A real HTTP receiver on 127.0.0.1 for the notifier tests: records every POST (path, headers,
JSON body) and answers `status`. It can be stopped and started again on the same port, to play
a receiver that is down for a while."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.hubproc import free_port

__all__ = ["Posted", "Receiver"]


@dataclass(frozen=True)
class Posted:
    path: str
    headers: dict[str, str]
    body: Any
    at: float = 0.0  # time.time() it arrived (bench/alerts.py --latency)


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.status = 200  # what it answers
        self.delay_s = 0.0  # how long it takes to answer (a hung receiver)
        self.posted: list[Posted] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def bodies(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [p.body for p in self.posted if path is None or p.path == path]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.time()
                time.sleep(receiver.delay_s)
                status = receiver.status
                if status < 300:  # a failing receiver did not take it
                    with receiver._lock:
                        receiver.posted.append(Posted(self.path, dict(self.headers), json.loads(raw), arrived))
                self.send_response(status)
                body = b"ok" if status < 300 else b"receiver says no"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

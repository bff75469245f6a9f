"""Fixtures for the SDK tests: a configured SDK writing to a temp file, and real servers
(uvicorn for ASGI, werkzeug/wsgiref for WSGI) on 127.0.0.1, each stopped by the test that
started it. Helpers are factory fixtures rather than an importable module so test folders of the
other packages cannot shadow them."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import uvicorn
from werkzeug.serving import make_server

import obshub_sdk
from obshub_sdk import _setup
from obshub_sdk.propagation import set_baggage_default


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON-lines file, parsed (fails the test on a non-JSON line).
    A last line without its newline is still being written by the app: not read yet."""
    if not path.exists():
        return []
    text = path.read_text("utf-8")
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines()]


class LogFile:
    def __init__(self, path: Path):
        self.path = path

    def lines(self, noise: tuple[str, ...] = ("asyncio",)) -> list[dict[str, Any]]:
        """Lines of the file, minus debug chatter of the named stdlib loggers."""
        return [x for x in read_lines(self.path) if x.get("logger") not in noise]

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """The first line matching ``pred``; access lines are written after the response is
        sent, so a test may read the file a moment before the line arrives."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if pred(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching line in {self.path}: {self.lines()}")
            time.sleep(0.01)


@contextlib.contextmanager
def _restoring_logging() -> Iterator[None]:
    """Give back the root logger and structlog exactly as they were: tests of other packages
    in the same session must not inherit the SDK's JSON handler."""
    root = logging.getLogger()
    # pytest adds and removes its own capture handlers around each test phase; leave those to it.
    handlers = [h for h in root.handlers if not type(h).__module__.startswith("_pytest")]
    level = root.level
    structlog_config = structlog.get_config()
    try:
        yield
    finally:
        _setup._detach()  # also the handler a test's dictConfig took off the root logger
        for handler in list(root.handlers):
            if getattr(handler, "_obshub_sdk", False):
                root.removeHandler(handler)
                handler.close()
                handler.sink.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        structlog.configure(**structlog_config)
        set_baggage_default(False)
        obshub_sdk.bind(request_id=None, trace_id=None, span_id=None, user_id=None, session_id=None)


@pytest.fixture
def sdk_log(tmp_path: Path) -> Iterator[LogFile]:
    """The SDK configured (service "svc", host "host-1", level debug) into a temp file."""
    path = tmp_path / "app.jsonl"
    with _restoring_logging():
        obshub_sdk.configure(service="svc", path=path, level="debug", host="host-1")
        yield LogFile(path)


@pytest.fixture
def unconfigure() -> Iterator[None]:
    """For tests that call configure() themselves."""
    with _restoring_logging():
        yield


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def serve_asgi() -> Iterator[Callable[[Any], str]]:
    """``serve_asgi(app) -> base_url``: the app under a real uvicorn on a free port."""
    running: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def start(app: Any) -> str:
        sock = _listening_socket()
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread, sock))
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread, sock in running:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def serve_wsgi() -> Iterator[Callable[[Any], str]]:
    """``serve_wsgi(app) -> base_url``: the app under werkzeug's threaded server."""
    running: list[tuple[Any, threading.Thread]] = []

    def start(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture
def read_jsonl() -> Callable[[Path], list[dict[str, Any]]]:
    return read_lines

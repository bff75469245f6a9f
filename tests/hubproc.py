"""Real hubs for tests: in a thread (`LiveHub`, fast, for API tests) or as a subprocess
(`HubProcess`, for tests that stop, kill and restart the hub under an agent).

Both listen on 127.0.0.1 on a free port and are stopped by whoever started them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from obshub.app import create_app
from obshub.auth import create_project, create_token
from obshub.settings import load_settings
from obshub.store import open_store

REPO = Path(__file__).resolve().parents[1]
# Clock samples (batches with X-Obshub-Sent-At) a test sends per host: the least-delayed one sets
# the skew estimate (obshub/clock.py). On a loaded machine (parallel test workers, other jobs) a
# request can wait a few hundred ms; with 2-3 samples an estimate was off by ~440 ms, and two hosts
# 120 ms apart swapped places. Duplicate one-line batches are quick to send and to take.
CLOCK_SAMPLES = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll `cond` until it is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], timeout: float = 20, path: str = "/healthz", name: str | None = None
) -> None:
    """Until `url + path` answers 200; fails early (naming `name`, else the url) if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name or url} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name or url} did not start")


def metric(h: _Client, name: str, **labels: str) -> float:
    """The value of one sample of the hub's /metrics (0 when absent)."""
    text = httpx.get(f"{h.url}/metrics").text
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def make_token(store_url: str, project: str, scope: str, label: str = "tests") -> str:
    """A new token of `scope` for `project`, made directly in the store (as `obshub token create`)."""
    store = open_store(store_url)
    store.open()
    try:
        found = store.get_project(project)
        assert found is not None, project
        return create_token(store, found, scope, label)[0]
    finally:
        store.close()


def make_project(store_url: str, name: str = "test") -> dict[str, Any]:
    """Create a project directly in the store; returns the `obshub project create` JSON."""
    store = open_store(store_url)
    store.open()
    try:
        return create_project(store, name, "http://127.0.0.1:0")
    finally:
        store.close()


class _Client:
    url: str
    store_url: str
    creds: dict[str, Any]

    @property
    def ingest_token(self) -> str:
        return str(self.creds["ingest_token"])

    @property
    def read_token(self) -> str:
        return str(self.creds["read_token"])

    @property
    def project_id(self) -> int:
        return int(self.creds["project_id"])

    @property
    def admin_token(self) -> str:
        """An admin token of the project (POST/DELETE /api/v1/checks), made on first use:
        `project create` makes none."""
        if "admin_token" not in self.creds:
            self.creds["admin_token"] = make_token(self.store_url, str(self.creds["project"]), "admin")
        return str(self.creds["admin_token"])

    @property
    def sentry_key(self) -> str:
        """The key of the DSN `project create` printed (scope `sentry`)."""
        return str(self.creds["dsn"]).split("//", 1)[1].split("@", 1)[0]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def ingest(self, lines: list[dict[str, Any]] | bytes, token: str | None = None, **kw: Any) -> httpx.Response:
        import orjson

        body = lines if isinstance(lines, bytes) else b"\n".join(orjson.dumps(x) for x in lines)
        with self.client(token or self.ingest_token) as c:
            return c.post("/api/v1/ingest", content=body, **kw)

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        with self.client(token or self.read_token) as c:
            return c.get(path, params=params)

    def patch(self, path: str, json: Any, token: str | None = None) -> httpx.Response:
        with self.client(token or self.read_token) as c:
            return c.patch(path, json=json)

    def search_all(self, q: str = "", **params: Any) -> list[dict[str, Any]]:
        """Every matching event (newest first), following cursors."""
        out: list[dict[str, Any]] = []
        cursor = None
        with self.client(self.read_token) as c:
            while True:
                p = {"q": q, "limit": 1000, **params}
                if cursor:
                    p["cursor"] = cursor
                r = c.get("/api/v1/search", params=p)
                r.raise_for_status()
                data = r.json()
                out.extend(data["events"])
                cursor = data["next_cursor"]
                if not cursor:
                    return out


class LiveHub(_Client):
    """`create_app` under a real uvicorn server in a background thread. `store`: the store
    object to serve (one opened on `store_url`, e.g. wrapped to count its calls); by default the
    hub opens its own. `config`: a hub config file (OBSHUB_CONFIG: its `[[checks]]` tables)."""

    def __init__(
        self, store_url: str, project: str = "test", store: Any = None, config: Path | None = None, **settings: Any
    ) -> None:
        self.creds = make_project(store_url, project)
        self.store_url = store_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {"OBSHUB_CONFIG": str(config)} if config is not None else {}
        self.settings = load_settings(env, store=store_url, port=self.port, **settings)
        self.app = create_app(self.settings, store=store)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=5,
                timeout_keep_alive=self.settings.keepalive_timeout_s,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveHub:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("hub did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)

    @property
    def store(self) -> Any:
        return self.app.state.hub.store

    def new_project(self, name: str) -> dict[str, Any]:
        return create_project(self.store, name, self.url)


class HubProcess(_Client):
    """`obshub serve` as a child process: can be stopped, SIGKILLed and started again on the
    same port and store, like a real deployment."""

    def __init__(
        self,
        store_url: str,
        port: int | None = None,
        project: str = "test",
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.store_url = store_url
        self.args = tuple(args)  # more `obshub serve` arguments (`--demo`)
        self.creds = make_project(store_url, project)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> HubProcess:
        cmd = [
            sys.executable,
            "-m",
            "obshub",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            self.store_url,
            *self.args,
        ]
        if self.log_path:
            with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
                self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log, cwd=REPO)
        else:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO
            )
        wait_healthy(self.url, self.proc, timeout, path="/readyz", name="hub")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

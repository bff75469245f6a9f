"""A live OpenSearch node for tests, started with scripts/opensearch.sh (never a mock).

- `opensearch_url` (session fixture): `OBSHUB_TEST_OPENSEARCH_URL` if set (an `opensearch://`
  URL of a node someone else runs), else one node on free ports with a temp data dir, started
  once per session and stopped at its end. Java or Maven missing, or the start failing: the
  test is skipped locally, but with `CI=true` it fails loudly (OpenSearch is required in CI).
- `OpenSearchNode`: start/stop/kill one node, for fault tests that take it down mid-ingest.
- `drop_prefix(url)`: remove every index, stream and template of a store URL's prefix.

Both fixtures may be imported by several modules and tests/conftest.py: the session node is
reference-counted, so it starts once and stops after its last user. Under pytest-xdist
(scripts/test.sh) the workers share one node too: the first worker that needs it starts it, the
last one done with it stops it (a count in a file of the run's temp root, under a file lock), so
N workers cost one JVM (~1 GiB, ~10-20 s of start) instead of N.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.ci import unavailable

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "opensearch.sh"
_START_TIMEOUT_S = 600  # first run downloads ~55 MB with Maven; a warm start takes ~10 s

__all__ = ["OpenSearchNode", "drop_prefix", "opensearch_url", "own_opensearch_node", "require_node"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_node(reason: str) -> None:
    """Skip locally, fail in CI: the OpenSearch tests are mandatory there."""
    unavailable(f"OpenSearch: {reason}")


class OpenSearchNode:
    """One node on 127.0.0.1 with its own data dir; `stop()` then `start()` keeps the data."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.transport_port = _free_port()
        self.dir = Path(data_dir)
        self.store_url = f"opensearch://127.0.0.1:{self.port}?replicas=0"

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "bash",
                str(SCRIPT),
                *args,
                "--port",
                str(self.port),
                "--transport-port",
                str(self.transport_port),
                "--dir",
                str(self.dir),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start(self, watch_pid: int | None = None) -> OpenSearchNode:
        """Start and wait for yellow/green; raises RuntimeError with the script's output.
        The node stops when process `watch_pid` (default: this one) exits."""
        for tool in ("java", "mvn", "curl"):
            if shutil.which(tool) is None and not (tool == "mvn" and _dist_cached()):
                raise RuntimeError(f"{tool} not found on PATH")
        try:
            p = self._run(
                "start", "--timeout", "240", "--watch-pid", str(watch_pid or os.getpid()), timeout=_START_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"scripts/opensearch.sh start took over {_START_TIMEOUT_S}s") from None
        if p.returncode != 0:
            raise RuntimeError(f"scripts/opensearch.sh start failed ({p.returncode}): {p.stderr[-3000:]}")
        return self

    def stop(self) -> None:
        self._run("stop", timeout=120)

    def kill(self) -> None:
        """SIGKILL the JVM: no flush, no graceful shutdown (a power cut, for the translog)."""
        pid_file = self.dir / "opensearch.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        pid_file.unlink(missing_ok=True)


def _dist_cached() -> bool:
    cache = Path(os.environ.get("OBSHUB_CACHE_DIR") or Path.home() / ".cache" / "obshub")
    # (and the analysis-common module scripts/opensearch.sh adds to the integ-test zip)
    return any(cache.glob("opensearch-2.*/modules/analysis-common/plugin-descriptor.properties"))


# -- the shared session node (reference-counted) ----------------------------------------------
_lock = threading.Lock()
_shared: dict[str, object] = {"users": 0, "url": None, "release": None, "error": None}


def _node_here() -> tuple[str, Callable[[], None]]:
    """A node of this process, in a temp dir; and how to stop it."""
    tmp = tempfile.mkdtemp(prefix="obshub-os-")
    node = OpenSearchNode(Path(tmp) / "node")
    try:
        node.start()
    except RuntimeError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def stop() -> None:
        node.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    return node.store_url, stop


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _node_of_workers(run_dir: Path) -> tuple[str, Callable[[], None]]:
    """The node every pytest-xdist worker of this run shares (its state in `run_dir`, the temp
    root of the run); and how to let go of it (the last user stops it). A start that failed is
    remembered, so the other workers skip (or fail, in CI) at once instead of trying again."""
    lock, state_file = run_dir / "opensearch.lock", run_dir / "opensearch.json"

    def read() -> dict[str, object]:
        return json.loads(state_file.read_text()) if state_file.exists() else {"users": 0}

    with _file_lock(lock):
        state = read()
        if state.get("error"):
            raise RuntimeError(str(state["error"]))
        if not state.get("url"):
            # Stopped with the controller (our parent) if the run is killed, not with this
            # worker: the others may still be using it when this one is done.
            node = OpenSearchNode(run_dir / "opensearch-node")
            try:
                node.start(watch_pid=os.getppid())
            except RuntimeError as e:
                state_file.write_text(json.dumps({"users": 0, "error": str(e)}))
                raise
            state = {"users": 0, "url": node.store_url, "port": node.port, "dir": str(node.dir)}
        state["users"] = int(str(state["users"])) + 1
        state_file.write_text(json.dumps(state))
    url = str(state["url"])

    def release() -> None:
        with _file_lock(lock):
            now = read()
            now["users"] = int(str(now["users"])) - 1
            if now["users"] == 0 and now.get("url"):
                OpenSearchNode(Path(str(now["dir"])), port=int(str(now["port"]))).stop()
                shutil.rmtree(str(now["dir"]), ignore_errors=True)
                now = {"users": 0}
            state_file.write_text(json.dumps(now))

    return url, release


def _acquire(run_dir: Path | None) -> str:
    with _lock:
        _shared["users"] = int(_shared["users"]) + 1  # type: ignore[call-overload]
        if _shared["url"] is not None:
            return str(_shared["url"])
        if _shared["error"] is not None:
            raise RuntimeError(str(_shared["error"]))
        external = os.environ.get("OBSHUB_TEST_OPENSEARCH_URL")
        if external:
            _shared["url"] = external
            return external
        try:
            url, release = _node_of_workers(run_dir) if run_dir is not None else _node_here()
        except RuntimeError as e:
            _shared["error"] = str(e)
            raise
        _shared.update(url=url, release=release)
        return url


def _release() -> None:
    with _lock:
        _shared["users"] = int(_shared["users"]) - 1  # type: ignore[call-overload]
        release = _shared["release"]
        if int(_shared["users"]) > 0 or release is None:  # type: ignore[call-overload]
            return
        assert callable(release)
        release()
        _shared.update(url=None, release=None)


@pytest.fixture(scope="session")
def opensearch_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`opensearch://127.0.0.1:PORT?replicas=0` of a live node (no prefix: add one per test)."""
    # Under xdist each worker's temp dir is `<run root>/gwN`: the root is the run's, shared.
    run_dir = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None
    try:
        url = _acquire(run_dir)
    except RuntimeError as e:
        with _lock:
            _shared["users"] = int(_shared["users"]) - 1  # type: ignore[call-overload]
        require_node(str(e))
    try:
        yield url
    finally:
        _release()


@pytest.fixture(scope="module")
def own_opensearch_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSearchNode]:
    """A node of the module's own, which its tests may stop, kill and restart."""
    node = OpenSearchNode(tmp_path_factory.mktemp("os-own") / "node")
    try:
        node.start()
    except RuntimeError as e:
        node.stop()
        require_node(str(e))
    try:
        yield node
    finally:
        node.stop()


def drop_prefix(store_url: str) -> None:
    """Delete the stream, template and small indices of the URL's prefix (test cleanup)."""
    from opensearchpy import OpenSearch

    parts = urlsplit(store_url)
    prefix = (parse_qs(parts.query).get("prefix") or ["obshub"])[0]
    host, _, port = parts.netloc.rpartition("@")[2].partition(",")[0].rpartition(":")
    client = OpenSearch(hosts=[{"host": host, "port": int(port)}], timeout=30)
    try:
        client.transport.perform_request("DELETE", f"/_data_stream/{prefix}-events", params={"ignore": 404})
        client.transport.perform_request("DELETE", f"/_index_template/{prefix}-events", params={"ignore": 404})
        for small in ("state", "rollups"):
            client.transport.perform_request(
                "DELETE", f"/{prefix}-{small}", params={"ignore": 404, "ignore_unavailable": "true"}
            )
    except Exception:  # cleanup must never fail a test whose node is down on purpose
        pass
    finally:
        client.close()

"""A live OpenSearch node for tests, started with scripts/opensearch.sh (never a mock).

- `opensearch_url` (session fixture): `OBSHUB_TEST_OPENSEARCH_URL` if set (an `opensearch://`
  URL of a node someone else runs), else one node on free ports with a temp data dir, started
  once per session and stopped at its end. Java or Maven missing, or the start failing: the
  test is skipped locally, but with `CI=true` it fails loudly (OpenSearch is required in CI).
- `OpenSearchNode`: start/stop/kill one node, for fault tests that take it down mid-ingest.
- `drop_prefix(url)`: remove every index, stream and template of a store URL's prefix.

Both fixtures may be imported by several modules and tests/conftest.py: the session node is
reference-counted, so it starts once and stops after its last user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
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

    def start(self) -> OpenSearchNode:
        """Start and wait for yellow/green; raises RuntimeError with the script's output."""
        for tool in ("java", "mvn", "curl"):
            if shutil.which(tool) is None and not (tool == "mvn" and _dist_cached()):
                raise RuntimeError(f"{tool} not found on PATH")
        try:
            p = self._run("start", "--timeout", "240", "--watch-pid", str(os.getpid()), timeout=_START_TIMEOUT_S)
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
_shared: dict[str, object] = {"users": 0, "url": None, "node": None, "tmp": None, "error": None}


def _acquire() -> str:
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
        tmp = tempfile.mkdtemp(prefix="obshub-os-")
        node = OpenSearchNode(Path(tmp) / "node")
        try:
            node.start()
        except RuntimeError as e:
            _shared["error"] = str(e)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _shared.update(url=node.store_url, node=node, tmp=tmp)
        return node.store_url


def _release() -> None:
    with _lock:
        _shared["users"] = int(_shared["users"]) - 1  # type: ignore[call-overload]
        if int(_shared["users"]) > 0 or _shared["node"] is None:  # type: ignore[call-overload]
            return
        node = _shared["node"]
        assert isinstance(node, OpenSearchNode)
        node.stop()
        shutil.rmtree(str(_shared["tmp"]), ignore_errors=True)
        _shared.update(url=None, node=None, tmp=None)


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """`opensearch://127.0.0.1:PORT?replicas=0` of a live node (no prefix: add one per test)."""
    try:
        url = _acquire()
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

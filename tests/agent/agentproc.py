"""`obshub-agent` as a child process for end-to-end tests (mirrors tests/hubproc.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def checkpoint_offset(state: Path, path: Path) -> int:
    """The agent's saved read offset of `path` (by inode, as the agent keys it); -1 if none."""
    try:
        doc = json.loads((state / "checkpoints.json").read_bytes())
        st = path.stat()
    except (FileNotFoundError, ValueError):
        return -1
    e = doc["files"].get(f"{st.st_dev}:{st.st_ino}")
    return int(e["offset"]) if e else -1


def write_config(path: Path, inputs: list[dict[str, Any]], **top: Any) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for inp in inputs:
        lines.append("\n[[inputs]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in inp.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    def __init__(self, config: Path, log_path: Path, metrics_port: int | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.metrics_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "obshub_agent", "--config", str(self.config)],
                stdout=log,
                stderr=log,
                cwd=REPO,
                env={**os.environ},
            )
        if self.metrics_port:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    self.metrics()
                    return self
                except OSError:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"agent exited with {self.proc.returncode}: {self.log()[-3000:]}") from None
                    time.sleep(0.05)
            raise RuntimeError("agent metrics endpoint did not come up")
        return self

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

"""A real Prometheus server (Debian's, from scripts/prometheus.sh) on 127.0.0.1 scraping given
targets every second: the dashboard tests (tests/dashboards/) and the Prometheus metric source
(tests/jobs/test_prometheus_source.py) run against it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

import yaml

from tests.hubproc import free_port

PROMETHEUS = "/usr/bin/prometheus"


class ReadyServer:
    """A server of the Prometheus family (Prometheus, Alertmanager) as a child process: `cmd`
    logging to `log`, ready once `GET /-/ready` answers 200 at `url`; stopped by the test."""

    name = "server"
    url: str
    cmd: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Prometheus(ReadyServer):
    name = "prometheus"

    def __init__(self, workdir: Path, targets: dict[str, str], rule_files: list[Path]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        # Scraping itself too, as most do: its process_* series must not leak into obshub panels.
        targets = {**targets, "prometheus": f"127.0.0.1:{self.port}"}
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in rule_files],
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": [t]}]} for job, t in targets.items()
                    ],
                }
            )
        )
        self.log = workdir / "prometheus.log"
        self.cmd = [
            PROMETHEUS,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # 400 for a query that does not parse
            raise AssertionError(f"{path} {params}: {e.code} {e.read().decode()[:500]}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.api("query", query=promql)["result"]  # type: ignore[no-any-return]

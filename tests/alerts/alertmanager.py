"""A real Alertmanager (Debian's prometheus-alertmanager, installed by scripts/alertmanager.sh)
on 127.0.0.1 for the tests: gossip off, its own storage directory, routing every alert to a
webhook receiver of the test with timings short enough for a test (group_wait 100 ms,
group_interval 500 ms, repeat_interval 2 s). Absent: the test skips locally, fails in CI."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.ci import unavailable
from tests.hubproc import free_port
from tests.promproc import ReadyServer

__all__ = ["BINARY", "Alertmanager"]

BINARY = "/usr/bin/prometheus-alertmanager"


class Alertmanager(ReadyServer):
    name = "alertmanager"

    def __init__(self, workdir: Path, webhook_url: str) -> None:
        if not os.access(BINARY, os.X_OK):
            unavailable(f"{BINARY} not installed (scripts/alertmanager.sh installs Debian's prometheus-alertmanager)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "test",
                        "group_by": ["alertname", "project"],
                        "group_wait": "100ms",
                        "group_interval": "500ms",
                        "repeat_interval": "2s",
                    },
                    "receivers": [{"name": "test", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
                }
            )
        )
        self.log = workdir / "alertmanager.log"
        self.cmd = [
            BINARY,
            f"--config.file={self.config}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip: one instance, no port 9094
        ]

    def api(self, path: str, body: Any = None) -> Any:
        """GET (or POST `body` as JSON to) /api/v2/<path>."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}/api/v2/{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

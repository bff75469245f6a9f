"""The compose stack's Alertmanager: its config passes Alertmanager's own checker (amtool), the
hub gets its config file from the mount OBSHUB_CONFIG names, and the commented [[notifiers]]
example of that file, once uncommented, is a valid notifier pointing at the stack's
Alertmanager (the service and port Prometheus also sends to)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from obshub.alerts.notify.config import AlertmanagerNotifier, parse_notifiers
from obshub.settings import load_settings
from tests.ci import unavailable

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
AMTOOL = "/usr/bin/amtool"


def test_alertmanager_config_passes_amtool() -> None:
    if not os.access(AMTOOL, os.X_OK):
        unavailable(f"{AMTOOL} not installed (scripts/alertmanager.sh installs Debian's prometheus-alertmanager)")
    r = subprocess.run(
        [AMTOOL, "check-config", str(COMPOSE / "alertmanager.yml")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_hub_can_be_pointed_at_the_stacks_alertmanager(tmp_path: Path) -> None:
    services = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]
    hub, am = services["hub"], services["alertmanager"]
    config = hub["environment"]["OBSHUB_CONFIG"]
    mounts = {v.split(":")[1]: COMPOSE / v.split(":")[0] for v in hub["volumes"]}
    shipped = mounts[config]
    assert load_settings({"OBSHUB_CONFIG": str(shipped)}).notifiers == (), "as shipped: no notifier"
    assert any(v.startswith("./alertmanager.yml:/etc/alertmanager/alertmanager.yml") for v in am["volumes"])
    assert am["ports"] == ["127.0.0.1:9093:9093"]

    uncommented = tmp_path / "hub.toml"
    uncommented.write_text(re.sub(r"(?m)^# (?=\[\[|\w+ = )", "", shipped.read_text()))
    settings = load_settings({"OBSHUB_CONFIG": str(uncommented)})
    [notifier] = parse_notifiers(settings.notifiers).values()
    assert isinstance(notifier, AlertmanagerNotifier) and notifier.urls == ("http://alertmanager:9093",)
    assert [r["notify"] for r in settings.alerts] == [["am"]]

    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    targets = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]

"""`obshub serve` with [[alerts]]: a bad table stops the hub naming it and the key; a good one
is evaluated by the hub's own scheduled job every alert_interval_s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.factories import event
from tests.hubproc import HubProcess


def test_bad_alert_table_stops_the_hub(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text('[[alerts]]\nname = "quiet"\nkind = "absence"\nquery = "host:web-3"\nwindow = "soon"\n')
    log = tmp_path / "hub.log"
    h = HubProcess(f"sqlite:///{tmp_path}/obshub.db", env={"OBSHUB_CONFIG": str(cfg)}, log_path=log)
    with pytest.raises(RuntimeError, match="hub exited"):
        h.start()
    assert "[[alerts]] #1 ('quiet'): window: expected a duration like 30s, 5m, 2h or 1d, got 'soon'" in log.read_text()


def test_the_hub_evaluates_config_rules_on_its_own(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        'alert_interval_s = 5\n[[alerts]]\nname = "web-3-silent"\nproject = "test"\nkind = "absence"\n'
        'query = "host:web-3"\nwindow = "1m"\nlabels = { severity = "page" }\n'
    )
    h = HubProcess(f"sqlite:///{tmp_path}/obshub.db", env={"OBSHUB_CONFIG": str(cfg)}).start()
    try:
        deadline = time.monotonic() + 15
        while True:
            rule = h.get("/api/v1/alerts/web-3-silent").json()
            if rule["state"] == "firing" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rule["state"] == "firing" and rule["source"] == "config", rule
        assert rule["last_evaluation"] is not None and rule["labels"] == {"severity": "page"}
        assert 'obshub_alerts_firing{project="test"} 1.0' in h.get("/metrics").text
    finally:
        h.stop()


def test_event_to_firing_within_interval_plus_5s(tmp_path: Path) -> None:
    """The engine's part of the event -> notification latency (issue 24: p95 <= interval + 5 s):
    an event ingested at any moment fires its rule at the next pass."""
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        'alert_interval_s = 5\n[[alerts]]\nname = "payment-failed"\nproject = "test"\nkind = "threshold"\n'
        'query = "payment failed"\nwindow = "1m"\nthreshold = 0\n'
    )
    h = HubProcess(f"sqlite:///{tmp_path}/obshub.db", env={"OBSHUB_CONFIG": str(cfg)}).start()
    try:
        time.sleep(2.5)  # somewhere between two passes
        assert h.get("/api/v1/alerts/payment-failed").json()["state"] == "ok"
        sent = time.monotonic()
        assert h.ingest([event(message="payment failed for order 7")]).status_code == 200
        while h.get("/api/v1/alerts/payment-failed").json()["state"] != "firing":
            assert time.monotonic() - sent < 5 + 5, "not firing within alert_interval_s + 5 s"
            time.sleep(0.1)
    finally:
        h.stop()

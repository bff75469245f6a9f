"""The notifiers' delivery status through a real `obshub serve`: a failing receiver shows in
`GET /api/v1/alerts` (`delivery`) and on the Alerts page with its error and no secret, then the
retried delivery arrives and the status says so; a second hub on the same store, which does not
run the jobs, answers the same status."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.alerts.receiver import Receiver
from tests.factories import event
from tests.hubproc import HubProcess
from tests.web.conftest import login_client


def _poll(what: Callable[[], Any], until: Callable[[Any], bool], timeout: float, why: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if until(got):
            return got
        assert time.monotonic() < deadline, f"{why}: {got}"
        time.sleep(0.2)


def test_delivery_status_failing_then_delivered_on_every_hub(receiver: Receiver, tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        "alert_interval_s = 5\nlease_s = 4\n"
        f'[[notifiers]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}/hook/s3cret-path"\n'
        '[[alerts]]\nname = "payment-failed"\nproject = "test"\nkind = "threshold"\n'
        'query = "payment failed"\nwindow = "5m"\nthreshold = 0\ngroup_wait = "0s"\nnotify = ["hook"]\n'
    )
    env = {"OBSHUB_CONFIG": str(cfg)}
    db = f"sqlite:///{tmp_path}/obshub.db"
    first = HubProcess(db, env=env).start()
    second = HubProcess(db, project="other", env=env).start()
    receiver.status = 503  # down for now
    try:
        assert first.ingest([event(message="payment failed for order 7")]).status_code == 200

        def hook_status(h: HubProcess) -> dict[str, Any] | None:
            d = h.get("/api/v1/alerts").json()["delivery"]
            return d["notifiers"][0] if d and d["notifiers"] else None

        failing = _poll(
            lambda: hook_status(first), lambda n: n is not None and n["failed"] >= 1, 30, "no failure reported"
        )
        assert "503" in failing["last_error"] and failing["last_ok_at"] is None and failing["sent"] == 0
        assert "s3cret" not in str(failing) and failing["target"].endswith("/***")
        with login_client(first) as web:
            page = web.get("/alerts").text
        assert "Notifiers" in page and "hook" in page and "503" in page and 'class="notifier-row failing"' in page
        assert "s3cret" not in page
        other = _poll(lambda: hook_status(second), lambda n: n is not None and n["failed"] >= 1, 10, "second hub")
        assert other["name"] == "hook" and "503" in other["last_error"]

        receiver.status = 200  # back: the retry delivers it
        delivered = _poll(lambda: hook_status(second), lambda n: n and n["sent"] >= 1, 30, "never delivered")
        assert delivered["last_ok_at"] is not None and delivered["pending"] == 0
        bodies = receiver.bodies("/hook/s3cret-path")
        assert len(bodies) == 1 and bodies[0]["status"] == "firing"
        assert bodies[0]["alerts"][0]["labels"]["alertname"] == "payment-failed"
    finally:
        second.stop()
        first.stop()

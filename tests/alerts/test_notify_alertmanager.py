"""The production path against a real Alertmanager: our alerts arrive through its routing at a
webhook receiver (fire), stay active while re-sent (repeat), resolve with endsAt (resolve), and a
silence created through Alertmanager's API suppresses their delivery."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obshub.alerts.model import Alert, Route
from obshub.alerts.notify.dispatcher import Dispatcher, Retry
from obshub.alerts.notify.trial import test_notification
from obshub.events import now_us
from obshub.settings import Settings
from obshub.store import Store
from tests.alerts.alertmanager import Alertmanager
from tests.alerts.receiver import Receiver
from tests.hubproc import free_port, wait_until


@pytest.fixture
def am(tmp_path: Path, receiver: Receiver) -> Iterator[Alertmanager]:
    a = Alertmanager(tmp_path, f"{receiver.url}/am").start()
    yield a
    a.stop()


def settings(*urls: str) -> Settings:
    return Settings(
        notifiers=({"name": "am", "type": "alertmanager", "urls": list(urls), "timeout_s": 2},),
        public_url="https://obshub.example.com",
    )


def alert(name: str, starts: int, ends: int | None = None) -> Alert:
    return Alert(
        labels={"alertname": name, "project": "shop", "severity": "page", "check": "api"},
        annotations={"summary": "check api is down"},
        starts_at=starts,
        ends_at=ends,
        url="https://obshub.example.com/checks/api",
    )


def notifications(receiver: Receiver, name: str) -> list[dict[str, Any]]:
    return [b for b in receiver.bodies("/am") if b["groupLabels"].get("alertname") == name]


def test_fire_repeat_resolve(am: Alertmanager, receiver: Receiver, sqlite_store: Store) -> None:
    d = Dispatcher(settings(am.url), sqlite_store, retry=Retry(0.05, 0.2))
    try:
        t = now_us()
        route = Route(group_wait_s=3600)  # Alertmanager ignores the built-in policy: sent at once
        d.update("1:api-down", route, [alert("api-down", t)], t)
        wait_until(lambda: notifications(receiver, "api-down"), 10, "Alertmanager's webhook")
        first = notifications(receiver, "api-down")[0]
        assert first["status"] == "firing" and first["receiver"] == "test"
        [got] = first["alerts"]
        assert got["labels"] == {"alertname": "api-down", "project": "shop", "severity": "page", "check": "api"}
        assert got["annotations"] == {"summary": "check api is down", "url": "https://obshub.example.com/checks/api"}
        assert got["generatorURL"] == "https://obshub.example.com/checks/api"
        assert dt.datetime.fromisoformat(got["startsAt"]).timestamp() == pytest.approx(t / 1e6, abs=0.002)

        # Re-sent every evaluation: Alertmanager keeps it active, and repeats it by its own
        # repeat_interval (2 s here), not ours.
        for _ in range(3):
            d.update("1:api-down", route, [alert("api-down", t)], now_us())
            time.sleep(1)
        [active] = [a for a in am.api("alerts") if a["labels"]["alertname"] == "api-down"]
        assert active["status"]["state"] == "active"
        ends = dt.datetime.fromisoformat(active["endsAt"]).timestamp()
        assert ends > time.time() + 200, "endsAt several evaluations ahead (4 min), not Alertmanager's 5 min default"
        assert len(notifications(receiver, "api-down")) >= 2, "Alertmanager repeated it"
        assert d.status()[0].sent >= 4 and d.status()[0].pending == 0

        d.update("1:api-down", route, [alert("api-down", t, ends=now_us())], now_us())
        wait_until(
            lambda: any(n["status"] == "resolved" for n in notifications(receiver, "api-down")),
            10,
            "the resolved webhook",
        )
        resolved = next(n for n in notifications(receiver, "api-down") if n["status"] == "resolved")
        assert resolved["alerts"][0]["status"] == "resolved"
    finally:
        d.close()


def test_a_silence_suppresses_delivery(am: Alertmanager, receiver: Receiver, sqlite_store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    silence = am.api(
        "silences",
        {
            "matchers": [{"name": "alertname", "value": "silenced", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + dt.timedelta(hours=1)).isoformat(),
            "createdBy": "test",
            "comment": "maintenance",
        },
    )
    d = Dispatcher(settings(am.url), sqlite_store)
    try:
        t = now_us()
        d.update("1:silenced", Route(), [alert("silenced", t)], t)
        d.update("1:loud", Route(), [alert("loud", t)], t)
        wait_until(lambda: notifications(receiver, "loud"), 10, "the alert that is not silenced")
        time.sleep(1.5)  # three of Alertmanager's group intervals
        assert notifications(receiver, "silenced") == []
        [got] = [a for a in am.api("alerts") if a["labels"]["alertname"] == "silenced"]
        assert got["status"]["state"] == "suppressed" and got["status"]["silencedBy"] == [silence["silenceID"]]
        assert d.status()[0].sent >= 1 and d.status()[0].last_error is None
    finally:
        d.close()


def test_every_alertmanager_gets_every_alert_one_down_is_retried(
    am: Alertmanager, receiver: Receiver, sqlite_store: Store
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    d = Dispatcher(settings(down, am.url), sqlite_store, retry=Retry(0.05, 0.2))
    try:
        t = now_us()
        d.update("1:both", Route(), [alert("both", t)], t)
        wait_until(lambda: notifications(receiver, "both"), 10, "the Alertmanager that is up")
        wait_until(lambda: d.status()[0].failed >= 2, 10, "retries of the one that is down")
        status = d.status()[0]
        assert status.pending == 1, "the alert still waits for the Alertmanager that is down"
        assert status.last_error is not None and status.last_error.startswith(f"{down}: ConnectError")
        assert status.target == f"{down}, {am.url}"
    finally:
        d.close()


def test_test_notification_goes_through_alertmanager(am: Alertmanager, receiver: Receiver) -> None:
    [outcome] = test_notification(
        settings(am.url), ["am"], rule="checkout-errors", project="shop", labels={"severity": "page"}
    )
    assert outcome.ok and str(outcome) == f"am (alertmanager -> {am.url}): ok: delivered"
    wait_until(lambda: notifications(receiver, "checkout-errors"), 10, "the test alert")
    [got] = notifications(receiver, "checkout-errors")[0]["alerts"]
    assert got["labels"] == {"alertname": "checkout-errors", "project": "shop", "severity": "page", "test": "true"}
    assert got["annotations"]["summary"] == "Test notification for rule checkout-errors (obshub alerts test)"
    [missing] = test_notification(settings(am.url), ["nope"])
    assert not missing.ok and "no such notifier" in str(missing)

"""The Dispatcher against real receivers on 127.0.0.1: the webhook body (Alertmanager's v4),
the Slack message, the per-rule policy (group wait, repeat, resolved, mute), retries with
backoff while a receiver is down, refusals, a full queue, secrets kept out of logs and status,
and the notification log in the store (both backends) across a restart."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from obshub.alerts.model import Alert, Route
from obshub.alerts.notify.dispatcher import LOG_KIND, Dispatcher, Retry
from obshub.events import now_us
from obshub.settings import Settings
from obshub.store import Store
from obshub.telemetry import Telemetry
from tests.alerts.receiver import Receiver
from tests.hubproc import wait_until

FAST = Retry(first_s=0.05, max_s=0.2)
ROUTE = Route(group_wait_s=0.3, repeat_interval_s=3600, send_resolved=True)
HOUR_US = 3600 * 1_000_000


def settings(*notifiers: dict[str, Any]) -> Settings:
    return Settings(notifiers=notifiers, public_url="https://obshub.example.com")


def hook(receiver: Receiver, name: str = "hook", path: str = "/hook/s3cretpath", **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": receiver.url + path, **kw}


def alert(group: str, starts: int, ends: int | None = None, rule: str = "checkout-errors") -> Alert:
    return Alert(
        labels={"alertname": rule, "project": "shop", "severity": "page", "group_id": group},
        annotations={"summary": f"error group {group} is new"},
        starts_at=starts,
        ends_at=ends,
        url=f"https://obshub.example.com/groups/{group}",
    )


@pytest.fixture
def make(sqlite_store: Store) -> Iterator[Any]:
    """Dispatchers with fast retries, on the given store or the test's SQLite one; closed after."""
    made: list[Dispatcher] = []

    def make(s: Settings, store: Store | None = None, **kw: Any) -> Dispatcher:
        d = Dispatcher(s, store if store is not None else sqlite_store, retry=FAST, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def test_webhook_body_is_alertmanagers_v4(receiver: Receiver, make: Any) -> None:
    d = make(settings(hook(receiver, headers={"Authorization": "Bearer t0k"})))
    t = now_us()
    d.update("7:checkout-errors", ROUTE, [alert("g1", t - 5_000_000), alert("g2", t)], t)
    d.update("7:checkout-errors", ROUTE, [alert("g1", t - 5_000_000), alert("g2", t)], t)  # same pass again
    wait_until(lambda: receiver.posted, 5, "the webhook")
    time.sleep(0.5)
    assert len(receiver.posted) == 1, "both alerts in one notification, once"
    got = receiver.posted[0]
    assert got.path == "/hook/s3cretpath" and got.headers["Authorization"] == "Bearer t0k"
    body = got.body
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert body["groupKey"] == '{}:{alertname="checkout-errors", project="shop"}'
    assert body["groupLabels"] == {"alertname": "checkout-errors", "project": "shop"}
    assert body["commonLabels"] == {"alertname": "checkout-errors", "project": "shop", "severity": "page"}
    assert body["commonAnnotations"] == {}
    assert body["externalURL"] == "https://obshub.example.com" and body["truncatedAlerts"] == 0
    by_group = {a["labels"]["group_id"]: a for a in body["alerts"]}
    a1 = by_group["g1"]
    assert set(a1) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert a1["status"] == "firing" and a1["endsAt"] == "0001-01-01T00:00:00Z"
    assert a1["startsAt"].endswith("Z") and a1["startsAt"][:4].isdigit()
    assert a1["generatorURL"] == "https://obshub.example.com/groups/g1"
    assert a1["annotations"] == {"summary": "error group g1 is new", "url": "https://obshub.example.com/groups/g1"}
    assert a1["fingerprint"] == alert("g1", 0).fingerprint and len(a1["fingerprint"]) == 16
    [status] = d.status()
    assert (status.sent, status.failed, status.pending, status.last_error) == (1, 0, 0, None)
    assert status.last_ok_at is not None and status.target == f"{receiver.url}/***"


def test_webhook_max_alerts_truncates(receiver: Receiver, make: Any) -> None:
    d = make(settings(hook(receiver, max_alerts=2)))
    t = now_us()
    d.update("1:r", ROUTE, [alert(f"g{i}", t) for i in range(5)], t)
    wait_until(lambda: receiver.posted, 5, "the webhook")
    body = receiver.posted[0].body
    assert len(body["alerts"]) == 2 and body["truncatedAlerts"] == 3


def test_slack_message_is_readable(receiver: Receiver, make: Any) -> None:
    d = make(settings({"name": "chat", "type": "slack", "url": receiver.url + "/services/T1/B1/xoxsecret"}))
    t = now_us()
    d.update("1:checkout-errors", ROUTE, [alert("g1", t - 60_000_000), alert("g2", t)], t)
    wait_until(lambda: receiver.posted, 5, "the slack message")
    body = receiver.posted[0].body
    text = body["text"]
    assert "[FIRING:2] checkout-errors (shop)" in text and "2 firing" in text and "project shop" in text
    assert "<https://obshub.example.com/groups/" in text
    blocks = body["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "[FIRING:2] checkout-errors (shop)"}}
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert [f.split("\n")[0] for f in fields] == ["*What*", "*Where*", "*How many*", "*First seen*", "*Last seen*"]
    assert "project shop (severity=page)" in fields[1] and fields[2].endswith("2 firing")
    assert fields[3].endswith(" UTC")
    listed = blocks[2]["text"]["text"]
    assert "<https://obshub.example.com/groups/g1|error group g1 is new — group_id=g1>" in listed


def test_repeat_resolve_and_mute_policy(receiver: Receiver, make: Any) -> None:
    d = make(settings(hook(receiver)))
    t = now_us()
    a = alert("g1", t)
    d.update("1:r", ROUTE, [a], t)
    wait_until(lambda: len(receiver.posted) == 1, 5, "the first notification")
    d.update("1:r", ROUTE, [a], t + 60_000_000)  # a minute later: within repeat_interval
    time.sleep(0.6)
    assert len(receiver.posted) == 1
    d.update("1:r", ROUTE, [a], t + HOUR_US + 1)  # repeat_interval later: again
    wait_until(lambda: len(receiver.posted) == 2, 5, "the repeat")
    assert receiver.posted[1].body["status"] == "firing"

    muted = Route(group_wait_s=0.3, muted_until=now_us() + HOUR_US)
    d.update("1:r", muted, [alert("g2", t)], now_us())  # muted: a new alert is not sent
    time.sleep(0.6)
    assert len(receiver.posted) == 2
    d.update("1:r", ROUTE, [alert("g2", t)], now_us())  # mute over (the route no longer has it)
    wait_until(lambda: len(receiver.posted) == 3, 5, "the alert after the mute")

    d.update("1:r", ROUTE, [alert("g1", t, ends=now_us())], now_us())
    wait_until(lambda: len(receiver.posted) == 4, 5, "the resolved notification")
    body = receiver.posted[3].body
    assert body["status"] == "resolved" and body["alerts"][0]["status"] == "resolved"
    assert body["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"

    quiet = Route(group_wait_s=0.3, send_resolved=False)
    d.update("1:r", quiet, [alert("g2", t, ends=now_us())], now_us())
    time.sleep(0.6)
    assert len(receiver.posted) == 4, "send_resolved = false: no resolved notification"
    d.update("1:r", ROUTE, [alert("g2", t)], now_us())  # fires again: new again
    wait_until(lambda: len(receiver.posted) == 5, 5, "the alert firing again")


def test_fired_and_resolved_within_group_wait_is_never_sent(receiver: Receiver, make: Any) -> None:
    d = make(settings(hook(receiver)))
    t = now_us()
    slow = Route(group_wait_s=0.5)
    d.update("1:r", slow, [alert("g1", t)], t)
    d.update("1:r", slow, [alert("g1", t, ends=t + 1)], t + 1)
    time.sleep(1.0)
    assert receiver.posted == [] and d.status()[0].pending == 0


def test_route_picks_notifiers(receiver: Receiver, make: Any) -> None:
    other = Receiver().start()
    try:
        d = make(settings(hook(receiver, name="a"), hook(other, name="b")))
        t = now_us()
        d.update("1:r", Route(notifiers=("b", "nope"), group_wait_s=0.1), [alert("g1", t)], t)
        wait_until(lambda: other.posted, 5, "notifier b")
        d.update("1:all", Route(group_wait_s=0.1), [alert("g1", t, rule="all")], t)  # empty: every one
        wait_until(lambda: receiver.posted and len(other.posted) == 2, 5, "both notifiers")
        assert [p.body["groupLabels"]["alertname"] for p in receiver.posted] == ["all"]
    finally:
        other.stop()


def test_receiver_down_is_retried_with_backoff_then_delivered(receiver: Receiver, make: Any) -> None:
    receiver.stop()
    telemetry = Telemetry.create()
    d = make(settings(hook(receiver)), telemetry=telemetry)
    t = now_us()
    with capture_logs() as logs:
        d.update("1:r", ROUTE, [alert("g1", t)], t)
        wait_until(lambda: d.status()[0].failed >= 3, 10, "three failed attempts")
        status = d.status()[0]
        assert status.sent == 0 and status.pending == 1 and status.last_ok_at is None
        assert status.last_error is not None and "ConnectError" in status.last_error
        assert status.last_error.startswith(f"{receiver.url}/***: ") and status.last_error_at is not None
        receiver.start()  # back on the same port
        wait_until(lambda: receiver.posted, 10, "the delivery once the receiver is back")
        wait_until(lambda: d.status()[0].sent == 1, 5, "the status")
    time.sleep(0.5)
    assert len(receiver.posted) == 1, "delivered once: nothing lost, nothing doubled"
    assert d.status()[0].pending == 0
    failed = [e for e in logs if e["event"] == "alert notification failed"]
    delays = [e["retry_in_s"] for e in failed]
    assert delays[:3] == [0.05, 0.1, 0.2] and max(delays) == 0.2, "doubling, capped"
    metrics = telemetry.registry
    assert metrics.get_sample_value("obshub_alert_notifications_total", {"notifier": "hook", "outcome": "sent"}) == 1
    assert metrics.get_sample_value("obshub_alert_notifications_total", {"notifier": "hook", "outcome": "failed"}) >= 3
    assert metrics.get_sample_value("obshub_alert_notifications_pending", {"notifier": "hook"}) == 0


@pytest.mark.parametrize(("code", "retried"), [(400, False), (404, False), (429, True), (500, True), (503, True)])
def test_error_statuses(receiver: Receiver, make: Any, code: int, retried: bool) -> None:
    receiver.status = code
    d = make(settings(hook(receiver)))
    t = now_us()
    d.update("1:r", ROUTE, [alert("g1", t)], t)
    if retried:
        wait_until(lambda: d.status()[0].failed >= 2, 5, "retries")
        assert d.status()[0].pending == 1 and d.status()[0].rejected == 0
        receiver.status = 200
        wait_until(lambda: d.status()[0].sent == 1, 5, "the delivery")
        assert len(receiver.posted) == 1
    else:
        wait_until(lambda: d.status()[0].rejected == 1, 5, "the refusal")
        time.sleep(0.5)
        status = d.status()[0]
        assert (status.failed, status.pending, status.sent) == (0, 0, 0), "a 4xx is not retried"
        assert status.last_error == f"{receiver.url}/***: HTTP {code}: receiver says no"


def test_full_queue_drops_the_oldest_counted_and_logged(receiver: Receiver, make: Any) -> None:
    receiver.stop()
    telemetry = Telemetry.create()
    d = make(settings(hook(receiver)), telemetry=telemetry, max_queue=2)
    t = now_us()
    fast = Route(group_wait_s=0)
    with capture_logs() as logs:
        for i in range(4):
            d.update(f"1:r{i}", fast, [alert("g", t, rule=f"r{i}")], t)
            time.sleep(0.15)
        wait_until(lambda: d.status()[0].dropped == 2, 5, "two drops")
    assert d.status()[0].pending == 2
    dropped = [e for e in logs if e["event"] == "alert notification dropped: queue full"]
    assert len(dropped) == 2 and dropped[0]["cap"] == 2
    assert (
        telemetry.registry.get_sample_value(
            "obshub_alert_notifications_total", {"notifier": "hook", "outcome": "dropped"}
        )
        == 2
    )
    receiver.start()
    wait_until(lambda: d.status()[0].sent == 2, 10, "the two kept")
    # The dropped rules' alerts were forgotten: the next pass notifies them.
    for i in range(4):
        d.update(f"1:r{i}", fast, [alert("g", t, rule=f"r{i}")], now_us())
    wait_until(lambda: d.status()[0].sent == 4, 10, "the dropped ones, re-notified")
    assert sorted(p.body["groupLabels"]["alertname"] for p in receiver.posted) == ["r0", "r1", "r2", "r3"]


def test_secrets_stay_out_of_logs_and_status(receiver: Receiver, make: Any, caplog: pytest.LogCaptureFixture) -> None:
    """structlog's events, the standard library's records at DEBUG (httpx logs each request's
    URL at INFO), the status and the notifiers' repr: no secret anywhere."""
    caplog.set_level(logging.DEBUG)
    receiver.status = 500
    s = settings(
        hook(receiver, path="/hook/s3cretpath?token=t0psecret", headers={"X-Key": "hdrsecret"}),
        {"name": "chat", "type": "slack", "url": receiver.url + "/services/T/B/xoxsecret"},
    )
    with capture_logs() as logs:
        d = make(s)
        t = now_us()
        d.update("1:r", Route(group_wait_s=0), [alert("g1", t)], t)
        wait_until(lambda: all(st.failed >= 2 for st in d.status()), 5, "failures")
        receiver.stop()
        wait_until(lambda: all("ConnectError" in (st.last_error or "") for st in d.status()), 5, "connect errors")
    shown = repr(logs) + repr(d.status()) + repr([st.to_json() for st in d.status()]) + repr(d._notifiers)
    shown += caplog.text
    assert "HTTP Request" not in caplog.text
    for secret in ("s3cretpath", "t0psecret", "hdrsecret", "xoxsecret"):
        assert secret not in shown, secret
    assert "alert notification failed" in shown


@pytest.mark.parametrize("store_url", ["sqlite", "opensearch"], indirect=True)
def test_a_restarted_hub_does_not_notify_again(receiver: Receiver, make: Any, store: Store) -> None:
    s = settings(hook(receiver))
    t = now_us()
    firing = [alert("g1", t), alert("g2", t)]
    first = make(s, store)
    first.update("3:checkout-errors", ROUTE, firing, t)
    wait_until(lambda: receiver.posted and first.status()[0].pending == 0, 10, "the first delivery")
    first.close()
    record = store.get_record(LOG_KIND, "3:checkout-errors@hook")
    assert record is not None and set(record.value["alerts"]) == {a.fingerprint for a in firing}

    second = make(s, store)  # the restarted hub, same store
    second.update("3:checkout-errors", ROUTE, firing, now_us())
    time.sleep(0.8)
    assert len(receiver.posted) == 1, "already notified: not again"
    second.update("3:checkout-errors", ROUTE, [*firing, alert("g3", t)], now_us())  # one new alert
    wait_until(lambda: len(receiver.posted) == 2, 5, "the new alert")
    assert [a["labels"]["group_id"] for a in receiver.posted[1].body["alerts"]] == ["g3"]
    second.update("3:checkout-errors", ROUTE, firing, now_us() + HOUR_US + 1)  # repeat_interval later
    wait_until(lambda: len(receiver.posted) == 3, 5, "the repeat")
    second.update("3:checkout-errors", ROUTE, [alert(g, t, ends=now_us()) for g in ("g1", "g2", "g3")], now_us())
    wait_until(lambda: len(receiver.posted) == 4, 5, "the resolved notification")
    wait_until(lambda: second.status()[0].pending == 0, 5, "the log write")
    assert store.get_record(LOG_KIND, "3:checkout-errors@hook") is None, "nothing firing: the record is gone"


def test_undelivered_at_shutdown_is_notified_by_the_next_hub(
    receiver: Receiver, make: Any, sqlite_store: Store
) -> None:
    receiver.stop()
    store = sqlite_store
    s = settings(hook(receiver))
    t = now_us()
    first = make(s, store)
    first.update("1:r", ROUTE, [alert("g1", t)], t)
    wait_until(lambda: first.status()[0].failed >= 1, 5, "a failure")
    with capture_logs() as logs:
        first.close()
    assert any(e["event"].startswith("alert notifications not sent at shutdown") for e in logs)
    receiver.start()
    second = make(s, store)
    second.update("1:r", ROUTE, [alert("g1", t)], now_us())
    wait_until(lambda: receiver.posted, 5, "the delivery by the next hub")


def test_a_hub_taking_a_rule_back_reads_what_the_other_hub_notified(
    receiver: Receiver, make: Any, sqlite_store: Store
) -> None:
    """Hub A notified g1 firing; then hub B (the lease moved) notified it resolved. When A
    evaluates again after a gap of passes and g1 fires again, that is new: A reads the log from
    the store instead of trusting its memory, where g1 is still notified as firing."""
    s = dataclasses.replace(settings(hook(receiver)), alert_interval_s=1)
    t = now_us()
    a, b = make(s), make(s)
    a.update("1:r", ROUTE, [alert("g1", t)], t)
    wait_until(lambda: len(receiver.posted) == 1 and a.status()[0].pending == 0, 5, "A's notification")
    b.update("1:r", ROUTE, [alert("g1", t, ends=now_us())], now_us())
    wait_until(lambda: len(receiver.posted) == 2 and b.status()[0].pending == 0, 5, "B's resolved notification")
    time.sleep(3.2)  # FORGET_PASSES passes of 1 s without an update on A
    a.update("1:r", ROUTE, [alert("g1", now_us())], now_us())
    wait_until(lambda: len(receiver.posted) == 3, 5, "A notifying g1 firing again")
    assert receiver.posted[2].body["status"] == "firing"


@pytest.mark.parametrize("store_url", ["sqlite", "opensearch"], indirect=True)
def test_a_resolved_notification_left_by_a_stopped_hub_is_sent_by_the_next(
    receiver: Receiver, make: Any, store: Store
) -> None:
    """The engine reports a resolve once; the hub stops before delivering it (receiver down):
    the next hub on the store sends it, though the engine does not report it again."""
    s = settings(hook(receiver))
    t = now_us()
    first = make(s, store)
    first.update("1:r", ROUTE, [alert("g1", t)], t)
    wait_until(lambda: len(receiver.posted) == 1 and first.status()[0].pending == 0, 10, "the firing notification")
    receiver.stop()
    first.update("1:r", ROUTE, [alert("g1", t, ends=now_us())], now_us())
    wait_until(lambda: first.status()[0].failed >= 1, 10, "a failed attempt")
    first.close()
    record = store.get_record(LOG_KIND, "1:r@hook")
    assert record is not None and record.value["alerts"][alert("g1", 0).fingerprint]["resolved"]["ends_at"] > t

    receiver.start()
    second = make(s, store)
    second.update("1:r", ROUTE, [], now_us())  # the pass after the restart: nothing firing any more
    wait_until(lambda: len(receiver.posted) == 2, 10, "the resolved notification from the next hub")
    body = receiver.posted[1].body
    assert body["status"] == "resolved" and body["alerts"][0]["labels"]["group_id"] == "g1"
    assert body["alerts"][0]["annotations"]["summary"] == "error group g1 is new"
    wait_until(lambda: store.get_record(LOG_KIND, "1:r@hook") is None, 5, "the log emptied")
    second.update("1:r", ROUTE, [], now_us())
    time.sleep(0.6)
    assert len(receiver.posted) == 2, "sent once"


def test_a_hung_receiver_blocks_neither_update_nor_other_notifiers(receiver: Receiver, make: Any) -> None:
    slow = Receiver().start()
    slow.delay_s = 2.0
    try:
        d = make(settings(hook(slow, name="slow", timeout_s=5), hook(receiver, name="fast")))
        t = now_us()
        start = time.monotonic()
        for i in range(20):
            d.update(f"1:r{i}", Route(group_wait_s=0), [alert("g", t, rule=f"r{i}")], t)
        assert time.monotonic() - start < 0.5, "update() only decides and queues"
        wait_until(lambda: len(receiver.posted) == 20, 5, "the fast notifier, all 20")
        by_name = {st.name: st for st in d.status()}
        assert by_name["slow"].sent <= 1 and by_name["slow"].pending >= 19
    finally:
        slow.delay_s = 0
        slow.stop()


def test_nothing_is_lost_when_the_queue_overflows(receiver: Receiver, make: Any) -> None:
    """A queue of 1 while the receiver is down: a resolved notification (reported once by the
    engine) and two new ones compete; whichever are dropped, every one arrives once after the
    receiver is back and the engine goes on with its passes."""
    d = make(settings(hook(receiver)), max_queue=1)
    fast = Route(group_wait_s=0)
    t = now_us()
    d.update("1:a", fast, [alert("g", t, rule="a")], t)
    wait_until(lambda: len(receiver.posted) == 1 and d.status()[0].pending == 0, 5, "a firing")
    receiver.stop()
    d.update("1:a", fast, [alert("g", t, ends=now_us(), rule="a")], now_us())
    time.sleep(0.2)
    for rule in ("b", "c"):
        d.update(f"1:{rule}", fast, [alert("g", t, rule=rule)], now_us())
        time.sleep(0.2)
    wait_until(lambda: d.status()[0].dropped >= 1, 5, "a drop")
    receiver.start()
    deadline = time.monotonic() + 10
    while len(receiver.posted) < 4 and time.monotonic() < deadline:  # the engine's passes go on
        d.update("1:a", fast, [], now_us())
        for rule in ("b", "c"):
            d.update(f"1:{rule}", fast, [alert("g", t, rule=rule)], now_us())
        time.sleep(0.2)
    time.sleep(0.5)
    got = sorted((p.body["groupLabels"]["alertname"], p.body["status"]) for p in receiver.posted[1:])
    assert got == [("a", "resolved"), ("b", "firing"), ("c", "firing")]

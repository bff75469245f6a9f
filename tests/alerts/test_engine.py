"""The alert engine on real ingested data through a real hub, on both stores: every kind fires
and resolves, `for` goes pending -> firing, state survives a restart (a new engine over the same
store) without a new `starts_at`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from obshub.alerts.engine import AlertEngine
from obshub.alerts.model import Alert, Route
from obshub.alerts.state import STATE_KIND
from obshub.ingest import pipeline
from obshub.telemetry import Telemetry
from obshub.uptime.model import Check, ProbeResult
from obshub.uptime.writes import result_event
from tests.contract.test_errors_api import err
from tests.factories import event, now_us
from tests.hubproc import LiveHub

S = 1_000_000
MIN = 60 * S


class Sink:
    """A Notify that keeps what it is given (the real dispatcher lives in alerts/notify/)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Route, list[Alert]]] = []

    def update(self, rule_key: str, route: Route, alerts: Sequence[Alert], now_us: int) -> None:
        self.calls.append((rule_key, route, list(alerts)))

    def take(self) -> dict[str, list[Alert]]:
        out = {key.split(":", 1)[1]: alerts for key, _, alerts in self.calls}
        self.calls.clear()
        return out


def engine(
    hub: LiveHub, *rules: dict[str, Any], sink: Sink | None = None, checks: tuple[dict[str, Any], ...] = ()
) -> AlertEngine:
    settings = replace(hub.settings, alerts=tuple({"project": "test", **r} for r in rules), checks=checks)
    return AlertEngine(settings, hub.store, Telemetry.create(), sink or Sink())


def sink_of(e: AlertEngine) -> Sink:
    assert isinstance(e.notify, Sink)
    return e.notify


def test_threshold_fires_after_for_and_resolves(hub: LiveHub) -> None:
    t = now_us()
    rule = {
        "name": "billing-errors",
        "kind": "threshold",
        "query": "service:billing level:error",
        "window": "5m",
        "threshold": 2,
        "for": "1m",
        "labels": {"severity": "page"},
        "annotation": "see the runbook",
    }
    e = engine(hub, rule)
    assert e.run_once(t).firing == 0 and sink_of(e).take() == {}
    evs = [event(ts=t - 10 * S + i, service="billing", level="error") for i in range(3)]
    evs.append(event(ts=t - 10 * S, service="api", level="error"))  # another service: not counted
    assert hub.ingest(evs).status_code == 200
    s = e.run_once(t + S)
    assert (s.pending, s.firing) == (1, 0) and sink_of(e).take() == {}  # pending: nothing sent
    s = e.run_once(t + 30 * S)
    assert (s.pending, s.firing) == (1, 0)
    s = e.run_once(t + 62 * S)  # held for 1m: firing
    assert s.firing == 1
    sent = sink_of(e).take()["billing-errors"]
    assert len(sent) == 1 and sent[0].status == "firing" and sent[0].starts_at == t + 62 * S
    assert sent[0].labels == {"alertname": "billing-errors", "project": "test", "severity": "page"}
    assert sent[0].annotations["annotation"] == "see the runbook"
    assert "count of service:billing level:error over 5m = 3 > 2" in sent[0].annotations["summary"]
    assert "/search?q=" in sent[0].url
    assert e.run_once(t + 90 * S).firing == 1  # still firing: handed over again, same starts_at
    assert sink_of(e).take()["billing-errors"][0].starts_at == t + 62 * S
    s = e.run_once(t + 6 * MIN)  # the events left the window
    assert s.firing == 0
    resolved = sink_of(e).take()["billing-errors"]
    assert resolved[0].status == "resolved" and resolved[0].ends_at == t + 6 * MIN
    e.run_once(t + 7 * MIN)
    assert sink_of(e).take() == {}  # resolved once, not again


def test_pending_that_stops_goes_back_to_ok_without_firing(hub: LiveHub) -> None:
    t = now_us()
    e = engine(
        hub,
        {
            "name": "slow",
            "kind": "threshold",
            "query": "service:api",
            "measure": "max(attrs.latency_ms)",
            "window": "1m",
            "threshold": 500,
            "for": "2m",
        },
    )
    assert hub.ingest([event(ts=t - S, service="api", attrs={"latency_ms": 900})]).status_code == 200
    assert e.run_once(t).pending == 1
    s = e.run_once(t + 2 * MIN)
    assert (s.pending, s.firing) == (0, 0) and sink_of(e).take() == {}
    st = hub.store.get_record(STATE_KIND, f"{hub.project_id}:slow")
    assert [h["to"] for h in st.value["history"]] == ["pending", "ok"]


def test_below_threshold_and_avg_of_an_attribute(hub: LiveHub) -> None:
    t = now_us()
    e = engine(
        hub,
        {"name": "few-orders", "kind": "threshold", "query": "name:order", "window": "10m", "op": "<", "threshold": 2},
        {"name": "avg-latency", "kind": "threshold", "measure": "avg(attrs.ms)", "window": "10m", "threshold": 100},
        {"name": "users", "kind": "threshold", "measure": "unique(user_id)", "window": "10m", "threshold": 1},
    )
    evs = [event(ts=t - MIN, kind="event", name="order", user_id=f"u{i}", attrs={"ms": 60 + 100 * i}) for i in range(2)]
    assert hub.ingest(evs).status_code == 200
    e.run_once(t)
    assert sorted(sink_of(e).take()) == ["avg-latency", "users"]  # avg(60, 160) = 110 > 100; 2 users > 1
    e.run_once(t + 11 * MIN)
    sent = sink_of(e).take()
    assert sent["few-orders"][0].status == "firing"
    assert {a.status for a in sent["avg-latency"] + sent["users"]} == {"resolved"}


def test_absence_of_a_host(hub: LiveHub) -> None:
    t = now_us()
    e = engine(hub, {"name": "web-3-silent", "kind": "absence", "query": "host:web-3", "window": "10m"})
    assert hub.ingest([event(ts=t - MIN, host="web-3")]).status_code == 200
    assert e.run_once(t).firing == 0
    assert e.run_once(t + 8 * MIN).firing == 0
    assert e.run_once(t + 10 * MIN).firing == 1
    a = sink_of(e).take()["web-3-silent"][0]
    assert a.status == "firing" and "no events matching host:web-3 in the last 10m" in a.annotations["summary"]
    assert hub.ingest([event(ts=t + 10 * MIN, host="web-3")]).status_code == 200
    assert e.run_once(t + 11 * MIN).firing == 0
    assert sink_of(e).take()["web-3-silent"][0].ends_at == t + 11 * MIN


def test_error_rules_new_regression_frequency(hub: LiveHub) -> None:
    t = now_us()
    e = engine(
        hub,
        {"name": "new", "kind": "error", "when": "new", "window": "1h"},
        {"name": "regressed", "kind": "error", "when": "regression"},
        {"name": "frequent", "kind": "error", "when": "frequency", "threshold": 2, "window": "5m"},
        {
            "name": "many-users",
            "kind": "error",
            "when": "frequency",
            "measure": "users",
            "threshold": 1,
            "query": "service:billing",
            "window": "5m",
        },
    )
    assert hub.ingest([err("checkout", "'a'", ts=t - MIN, user_id="u1", service="billing")]).status_code == 200
    e.run_once(t)
    sent = sink_of(e).take()
    assert list(sent) == ["new"]
    gid = sent["new"][0].labels["group_id"]
    assert (
        sent["new"][0].url.endswith(f"/errors/{gid}") and "new error: KeyError" in sent["new"][0].annotations["summary"]
    )
    evs = [err("checkout", f"'{i}'", ts=t - MIN + i, user_id=f"u{i}", service="billing") for i in range(2, 4)]
    assert hub.ingest(evs).status_code == 200
    e.run_once(t + S)
    sent = sink_of(e).take()
    assert sorted(sent) == ["frequent", "many-users", "new"]
    assert sent["frequent"][0].labels["group_id"] == gid and sent["frequent"][0].annotations["value"] == "3"
    # resolve the group: `new` resolves; an occurrence after that regresses it
    hub.store.update_group(hub.project_id, gid, state="resolved", resolved_at=now_us())
    e.run_once(t + 2 * S)
    assert sink_of(e).take()["new"][0].status == "resolved"
    assert hub.ingest([err("checkout", "'z'", ts=t + 3 * S)]).status_code == 200
    e.run_once(t + 4 * S)
    sent = sink_of(e).take()
    assert sent["regressed"][0].status == "firing" and sent["regressed"][0].labels["group_id"] == gid
    e.run_once(t + 2 * 60 * MIN)  # out of every window
    sent = sink_of(e).take()
    assert all(a.status == "resolved" for alerts in sent.values() for a in alerts)
    assert "regressed" in sent and "frequent" in sent


def _probe(hub: LiveHub, check: Check, slot: int, up: bool, at: int, **attrs: Any) -> None:
    ev = result_event(hub.project_id, check, slot, ProbeResult(up, "GET x 200" if up else "connection refused"), at)
    ev["attrs"].update(attrs)
    assert pipeline.store_events(hub.store, hub.project_id, [ev], at).accepted == 1


def test_check_down_after_two_failures_recovered_after_one_success(hub: LiveHub) -> None:
    t = now_us()
    check = Check("shop", "https://shop.example", project="test")
    e = engine(
        hub,
        {"name": "down", "kind": "check"},
        checks=({"name": "shop", "target": "https://shop.example", "project": "test"},),
    )
    _probe(hub, check, 1, True, t - 30 * S)
    _probe(hub, check, 2, False, t - 20 * S)
    assert e.run_once(t - 19 * S).firing == 0  # one failure is not down
    _probe(hub, check, 3, False, t - 10 * S)
    assert e.run_once(t - 9 * S).firing == 1
    a = sink_of(e).take()["down"][0]
    assert a.labels["check"] == "shop" and "2 failed probes in a row (connection refused)" in a.annotations["summary"]
    _probe(hub, check, 4, True, t)
    assert e.run_once(t + S).firing == 0
    assert sink_of(e).take()["down"][0].status == "resolved"


def test_tls_expiry(hub: LiveHub) -> None:
    t = now_us()
    check = Check("shop", "https://shop.example", project="test")
    e = engine(hub, {"name": "cert", "kind": "check", "check": "shop", "when": "tls_expiry", "days": 14})
    _probe(hub, check, 1, True, t - 10 * S, tls_expires_at=t + 30 * 86_400 * S)
    assert e.run_once(t).firing == 0
    _probe(hub, check, 2, True, t - 5 * S, tls_expires_at=t + 3 * 86_400 * S)
    assert e.run_once(t + S).firing == 1
    assert "expires in 3.0 days" in sink_of(e).take()["cert"][0].annotations["summary"]


def test_restart_keeps_firing_and_its_starts_at(hub: LiveHub) -> None:
    t = now_us()
    rule = {"name": "quiet", "kind": "absence", "query": "service:nothing-logs-this", "window": "1m"}
    first = engine(hub, rule)
    assert first.run_once(t).firing == 1
    started = sink_of(first).take()["quiet"][0].starts_at
    again = engine(hub, rule)  # a restarted hub: a new engine over the same store
    s = again.run_once(t + 30 * S)
    assert s.firing == 1 and s.changed == 0  # nothing written: nothing changed
    assert sink_of(again).take()["quiet"][0].starts_at == started == t


def test_quiet_rules_write_one_record_per_pass(hub: LiveHub) -> None:
    t = now_us()
    rules = [{"name": f"r{i}", "kind": "threshold", "query": f"host:h{i}", "threshold": 5} for i in range(50)]
    e = engine(hub, *rules)
    before = {r.key: r.version for r in hub.store.list_records(STATE_KIND)}
    s = e.run_once(t)
    assert s.rules == 50 and s.changed == 0
    assert {r.key: r.version for r in hub.store.list_records(STATE_KIND)} == before == {}

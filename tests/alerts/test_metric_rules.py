"""Alert rules of kind `metric` on both stores (docs/alerting.md): a rule compares a defined
metric's stored value of the current or previous hour or day (the total or one group) with a
threshold, evaluated by the engine from the rollups the rollup job wrote; a metric without a
stored value is the rule's `last_error`, not a crash; bad bodies are 400s naming the field."""

from __future__ import annotations

from typing import Any

from obshub.alerts.engine import AlertEngine
from obshub.jobs.rollups import RollupJob
from obshub.telemetry import Telemetry
from tests.alerts.test_engine import Sink
from tests.factories import event, now_us
from tests.hubproc import LiveHub
from tests.web.conftest import login_client

HOUR = 3_600_000_000


def _post(hub: LiveHub, path: str, body: object) -> tuple[int, dict[str, Any]]:
    with hub.client(hub.read_token) as c:
        r = c.post(path, json=body)
    return r.status_code, r.json()


def test_metric_rules_fire_on_the_stored_values(hub: LiveHub) -> None:
    assert _post(hub, "/api/v1/metrics", {"name": "signups", "query": "name:signup", "group_by": "plan"})[0] == 201
    t = now_us()
    evs = [
        event(kind="event", name="signup", ts=t - 1000 * i, attrs={"plan": p})
        for i, p in enumerate(["pro", "pro", "free"])
    ]
    assert hub.ingest(evs).json()["accepted"] == 3
    rules = [
        {
            "name": "many",
            "kind": "metric",
            "metric": "signups",
            "op": ">",
            "threshold": 2,
            "labels": {"team": "growth"},
        },
        {"name": "pro_low", "kind": "metric", "metric": "signups", "group": "pro", "op": "<", "threshold": 1},
        {
            "name": "team_low",
            "kind": "metric",
            "metric": "signups",
            "group": "team",
            "window": "1d",
            "op": "<",
            "threshold": 1,
        },
        {
            "name": "yesterday",
            "kind": "metric",
            "metric": "signups",
            "window": "1d",
            "bucket": "previous",
            "op": "<",
            "threshold": 1,
        },
        {"name": "ghost", "kind": "metric", "metric": "nope", "threshold": 0},
    ]
    for rule in rules:
        status, answer = _post(hub, "/api/v1/alerts", rule)
        assert status == 201, answer
    sink = Sink()
    engine = AlertEngine(hub.settings, hub.store, Telemetry.create(), sink)
    # Before the rollup job ran, nothing is stored: errors, nothing fires.
    assert engine.run_once(t).firing == 0
    assert "no value stored" in hub.get("/api/v1/alerts/many").json()["last_error"]

    hub_ = hub.app.state.hub
    RollupJob(hub_.settings, hub_.store, hub_.telemetry).run(now=t)
    assert engine.run_once(t + 1).firing == 1
    many = hub.get("/api/v1/alerts/many").json()
    assert many["state"] == "firing" and many["last_value"] == 3 and many["last_error"] is None
    _, _, alerts = sink.calls[-1]
    assert alerts[0].labels == {"alertname": "many", "project": "test", "team": "growth"}
    assert "metric signups over current hour = 3 > 2" in alerts[0].annotations["summary"]
    pro = hub.get("/api/v1/alerts/pro_low").json()
    assert pro["state"] == "ok" and pro["last_value"] == 2
    team = hub.get("/api/v1/alerts/team_low").json()  # no row for that group: no value, no alert
    assert team["state"] == "ok" and team["last_value"] is None and team["last_error"] is None
    # The metric was first rolled up today: yesterday has no stored value.
    assert "previous day" in hub.get("/api/v1/alerts/yesterday").json()["last_error"]
    assert "'nope'" in hub.get("/api/v1/alerts/ghost").json()["last_error"]
    with login_client(hub) as web:  # the Alerts page lists them
        page = web.get("/alerts")
    assert page.status_code == 200 and "many" in page.text and "pro_low" in page.text


def test_bad_metric_rules_are_400s_naming_the_field(hub: LiveHub) -> None:
    base = {"name": "a", "kind": "metric", "metric": "signups", "threshold": 1}
    cases = [
        ({**base, "metric": None}, "metric: "),
        ({**base, "metric": "a b"}, "metric: "),
        ({**base, "window": "5m"}, "window: "),
        ({**base, "bucket": "last"}, "bucket: "),
        ({**base, "op": ">="}, "op: "),
        ({k: v for k, v in base.items() if k != "threshold"}, "threshold: "),
        ({**base, "query": "x"}, "query: "),
        ({**base, "for": "forever"}, "for: "),
    ]
    for body, prefix in cases:
        status, answer = _post(hub, "/api/v1/alerts", body)
        assert status == 400 and str(answer["error"]).startswith(prefix), (body, answer)

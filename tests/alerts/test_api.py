"""/api/v1/alerts through a live hub: API rules are evaluated by the engine like config ones,
their state, history and mutes show up, bad bodies are 400s naming the field."""

from __future__ import annotations

from obshub.alerts.catalog import RULE_KIND
from obshub.alerts.engine import AlertEngine
from obshub.telemetry import Telemetry
from tests.alerts.test_engine import Sink
from tests.factories import now_us
from tests.hubproc import LiveHub

S = 1_000_000


def _post(hub: LiveHub, body: object) -> tuple[int, dict[str, object]]:
    with hub.client(hub.read_token) as c:
        r = c.post("/api/v1/alerts", json=body)
    return r.status_code, r.json()


def test_api_rule_fires_shows_state_history_and_mute(hub: LiveHub) -> None:
    rule = {"name": "silent", "kind": "absence", "query": "service:billing", "window": "1m", "labels": {"team": "pay"}}
    assert _post(hub, rule)[0] == 201
    sink = Sink()
    engine = AlertEngine(hub.settings, hub.store, Telemetry.create(), sink)
    t = now_us()
    assert engine.run_once(t).firing == 1
    key, route, alerts = sink.calls[-1]
    assert key == f"{hub.project_id}:silent" and route.muted_until is None
    assert alerts[0].labels == {"alertname": "silent", "project": "test", "team": "pay"}
    got = hub.get("/api/v1/alerts/silent").json()
    assert got["state"] == "firing" and got["instances"][0]["state"] == "firing" and got["fired"] == 1
    assert got["last_evaluation"] is not None and got["last_value"] == 0
    with hub.client(hub.read_token) as c:
        muted = c.post("/api/v1/alerts/silent/mute", json={"for": "1h"}).json()
    assert muted["state"] == "muted" and muted["alert_state"] == "firing"
    engine.run_once(t + 30 * S)
    assert sink.calls[-1][1].muted_until is not None and sink.calls[-1][1].muted_until > t  # the dispatcher holds it
    with hub.client(hub.read_token) as c:
        assert c.post("/api/v1/alerts/silent/unmute").json()["state"] == "firing"
    # replacing the rule keeps its state; the history lists the change
    assert _post(hub, {**rule, "window": "2m"})[0] == 200
    assert hub.get("/api/v1/alerts/silent").json()["state"] == "firing"
    history = hub.get("/api/v1/alerts/silent/history").json()["history"]
    assert [(h["from"], h["to"]) for h in history] == [("ok", "firing")]
    # deleting it takes its state along
    with hub.client(hub.read_token) as c:
        assert c.delete("/api/v1/alerts/silent").status_code == 200
    assert hub.get("/api/v1/alerts/silent").status_code == 404
    assert engine.run_once(t + 60 * S).rules == 0


def test_bad_bodies_are_400s_naming_the_field(hub: LiveHub) -> None:
    cases = [
        ({"name": "a", "kind": "threshold", "query": "x", "threshold": 1, "window": "soon"}, "window: "),
        ({"name": "a", "kind": "threshold", "query": "level:loud", "threshold": 1}, "query: "),
        ({"name": "a", "kind": "absence", "query": "(x"}, "query: "),
        ({"name": "a", "kind": "paging"}, "kind: "),
        ({"name": "a", "kind": "absence", "query": "x", "project": "other"}, "project: "),
        ({"name": "a/b", "kind": "absence", "query": "x"}, "name: "),
        ({"name": "a", "kind": "absence", "query": "x", "labels": {"project": "x"}}, "labels.project: "),
        ([1, 2], "body: "),
    ]
    for body, prefix in cases:
        status, answer = _post(hub, body)
        assert status == 400 and str(answer["error"]).startswith(prefix), (body, answer)
    with hub.client(hub.read_token) as c:
        r = c.post("/api/v1/alerts", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"].startswith("body: ")
        assert c.post("/api/v1/alerts/nope/mute", json={"for": "1h"}).status_code == 404
        assert _post(hub, {"name": "a", "kind": "absence", "query": "x"})[0] == 201
        for bad in (
            {},
            {"for": "forever"},
            {"until": "yesterday"},
            {"for": "1h", "until": "2030-01-01"},
            {"until": True},
        ):
            r = c.post("/api/v1/alerts/a/mute", json=bad)
            assert r.status_code == 400, (bad, r.text)
    assert hub.get("/api/v1/alerts").json()["alerts"][0]["name"] == "a"


def test_a_project_has_at_most_1000_api_rules(sqlite_hub: LiveHub) -> None:
    hub = sqlite_hub
    for i in range(1000):  # stored as the API stores them, without 1,000 requests
        definition = {"name": f"r{i}", "kind": "absence", "query": f"host:h{i}"}
        hub.store.put_record(RULE_KIND, f"{hub.project_id}:r{i}", {"definition": definition}, version=0)
    status, answer = _post(hub, {"name": "one-more", "kind": "absence", "query": "x"})
    assert status == 409 and "1000 alert rules" in str(answer["error"])
    assert _post(hub, {"name": "r7", "kind": "absence", "query": "host:other"})[0] == 200  # replacing is allowed
    assert len(hub.get("/api/v1/alerts").json()["alerts"]) == 1000

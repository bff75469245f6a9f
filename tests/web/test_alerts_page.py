"""The Alerts page without a browser: rules with their state, the rule page with instances and
history, mute/unmute forms that need this session's CSRF token and a same-site origin."""

from __future__ import annotations

import re

from obshub.alerts.engine import AlertEngine
from obshub.telemetry import Telemetry
from tests.alerts.test_engine import Sink
from tests.factories import now_us
from tests.hubproc import LiveHub
from tests.web.conftest import login_client


def test_alerts_page_state_history_and_mute(sqlite_hub: LiveHub) -> None:
    hub = sqlite_hub
    with hub.client(hub.read_token) as c:
        rule = {"name": "billing-silent", "kind": "absence", "query": "service:billing", "labels": {"team": "pay"}}
        assert c.post("/api/v1/alerts", json=rule).status_code == 201
        assert c.post("/api/v1/alerts", json={"name": "calm", "kind": "absence", "query": "x"}).status_code == 201
    with login_client(hub) as web:
        html = web.get("/alerts").text
        assert "billing-silent" in html and "not yet" in html and 'href="/alerts"' in html
        AlertEngine(hub.settings, hub.store, Telemetry.create(), Sink()).run_once(now_us())
        html = web.get("/alerts").text
        assert html.count('class="state state-firing"') == 2 and "team=pay" in html
        page = web.get("/alerts/billing-silent")
        assert page.status_code == 200
        assert "ok → firing" in page.text and "no events matching service:billing" in page.text
        assert web.get("/alerts/nope").status_code == 404
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        url = "/alerts/billing-silent/action"
        assert web.post(url, data={"action": "mute", "for": "1h"}, headers={"Origin": hub.url}).status_code == 403
        evil = {"Origin": "https://evil.example"}
        assert web.post(url, data={"action": "mute", "for": "1h", "csrf": token[1]}, headers=evil).status_code == 403
        r = web.post(url, data={"action": "mute", "for": "1h", "csrf": token[1]}, headers={"Origin": hub.url})
        assert r.status_code == 303 and r.headers["location"] == "/alerts/billing-silent?done=muted"
        assert hub.get("/api/v1/alerts/billing-silent").json()["state"] == "muted"
        assert 'class="state state-muted"' in web.get("/alerts").text
        bad = web.post(url, data={"action": "mute", "for": "forever", "csrf": token[1]}, headers={"Origin": hub.url})
        assert bad.status_code == 400
        r = web.post(url, data={"action": "unmute", "csrf": token[1], "back": "list"}, headers={"Origin": hub.url})
        assert r.status_code == 303 and r.headers["location"] == "/alerts"
        assert hub.get("/api/v1/alerts/billing-silent").json()["state"] == "firing"
        assert (
            web.post(url, data={"action": "explode", "csrf": token[1]}, headers={"Origin": hub.url}).status_code == 400
        )
        gone = web.post("/alerts/nope/action", data={"action": "unmute", "csrf": token[1]}, headers={"Origin": hub.url})
        assert gone.status_code == 404

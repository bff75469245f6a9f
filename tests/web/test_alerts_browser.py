"""The Alerts page in a real browser (Debian's chromium through Playwright): reached from the
menu, a firing rule muted and unmuted from the page, its history on the rule's page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from obshub.alerts.engine import AlertEngine
from obshub.telemetry import Telemetry
from tests.alerts.test_engine import Sink
from tests.factories import now_us
from tests.hubproc import LiveHub
from tests.web.conftest import shot
from tests.web.test_browser import accessible

pytestmark = pytest.mark.browser


def test_alerts_page_mute_and_history(page: Any, demo_hub: LiveHub) -> None:
    with demo_hub.client(demo_hub.read_token) as c:
        rule = {"name": "nobody-logs-this", "kind": "absence", "query": "service:no-such-service", "window": "5m"}
        assert c.post("/api/v1/alerts", json=rule).status_code in (200, 201)
    AlertEngine(demo_hub.settings, demo_hub.store, Telemetry.create(), Sink()).run_once(now_us())
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    page.wait_for_url("**/alerts")
    row = page.locator("tr", has_text="nobody-logs-this")
    expect(row.locator(".state")).to_have_text("firing")
    accessible(page)
    row.get_by_label("Mute for").select_option("4h")
    row.get_by_role("button", name="Mute").click()
    page.wait_for_url("**/alerts")
    expect(page.locator("tr", has_text="nobody-logs-this").locator(".state")).to_have_text("muted")
    shot(page, "alerts")
    page.get_by_role("link", name="nobody-logs-this").click()
    page.wait_for_url("**/alerts/nobody-logs-this")
    expect(page.locator("table.history")).to_contain_text("ok → firing")
    accessible(page)
    page.get_by_role("button", name="Unmute").click()
    page.wait_for_url("**/alerts/nobody-logs-this?done=unmuted")
    expect(page.locator("h1 .state")).to_have_text("firing")
    shot(page, "alert-rule")

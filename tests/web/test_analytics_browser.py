"""The Analytics tabs in Chromium on `obshub serve --demo` (what `make run` starts): a person
builds a funnel step by step, switches its breakdown, opens retention, reads the A/B result and
saves it to a dashboard; every number the page shows is the API's answer to the same request
(the request read back from the page's URL: the permalink)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import expect

from tests.web.conftest import DemoServe, shot
from tests.web.test_browser import accessible

pytestmark = pytest.mark.browser


def _api(hub: DemoServe, analysis: str, body: dict[str, Any]) -> dict[str, Any]:
    with hub.client(hub.read_token) as c:
        r = c.post(f"/api/v1/analytics/{analysis}", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _state(page: Any) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(page.url).query))


def _cells(page: Any, row: str) -> list[str]:
    return [str(v) for v in page.locator(f"{row} td[data-v]").evaluate_all("els => els.map(e => e.dataset.v)")]


def _v(x: Any) -> str:
    return "" if x is None else str(x)


def test_funnel_breakdown_retention_and_experiment_match_the_api(served_page: Any, served_demo: DemoServe) -> None:
    page = served_page
    page.get_by_role("link", name="Analytics").click()
    page.get_by_role("navigation", name="Analyses").get_by_role("link", name="Funnels").click()
    page.wait_for_url("**/analytics/funnels")
    for i, name in enumerate(("signup", "add_to_cart", "checkout"), 1):
        page.get_by_label(f"Step {i} event").fill(name)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**e3=checkout**")
    page.get_by_label("Step 4 event").fill("purchase")  # the row that appeared for one more step
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**e4=purchase**")
    st = _state(page)
    body = {
        "steps": [st[f"e{i}"] for i in range(1, 5)],
        "window": st["window"],
        "order": st["order"],
        "from": st["from"],
    }
    api = _api(served_demo, "funnel", body)
    assert api["steps"][0]["users"] >= 1600 and api["steps"][3]["users"] > 0
    for i, s in enumerate(api["steps"], 1):
        want = [_v(s["users"]), _v(s["from_previous"]), _v(s["from_first"]), _v(s["median_seconds"])]
        assert _cells(page, f'tr[data-group="all"][data-step="{i}"]') == want
    expect(page.locator("svg.vchart rect.sbar")).to_have_count(4)
    accessible(page)
    shot(page, "analytics-funnel")

    # Switch the breakdown: one group of rows per campaign, as the API breaks it down.
    page.get_by_label("Breakdown").fill("campaign")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**breakdown=campaign**")
    api = _api(served_demo, "funnel", {**body, "breakdown": "campaign"})
    assert {g["value"] for g in api["breakdown"]} == {"search", "newsletter", "social", "partner"}
    for g in api["breakdown"]:
        got = _cells(page, f'tr[data-group="{g["value"]}"][data-step="4"]')
        assert got[0] == _v(g["steps"][3]["users"]) and got[2] == _v(g["steps"][3]["from_first"])
    assert page.get_by_role("link", name="CSV").get_attribute("href").endswith("format=csv")

    # Retention: signup -> login per week.
    page.get_by_role("link", name="Retention").click()
    page.get_by_label("Start event").fill("signup")
    page.get_by_label("Return event").fill("login")
    page.locator("select[name=period]").select_option("week")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**period=week**")
    st = _state(page)
    api = _api(
        served_demo,
        "retention",
        {"start": {"event": "signup"}, "return": {"event": "login"}, "period": "week", "from": st["from"]},
    )
    assert len(api["cohorts"]) >= 4
    for c in api["cohorts"]:
        assert _cells(page, f'tr[data-cohort="{c["cohort"]}"]') == [_v(n) for n in c["returned"]]
    expect(page.locator("svg.vchart polyline.sline")).to_have_count(1)
    accessible(page)
    shot(page, "analytics-retention")

    # Experiments: the demo's checkout_flow test, from the page's own example link.
    page.get_by_role("link", name="Experiments").click()
    page.get_by_role("link", name=re.compile("checkout_flow")).click()
    page.wait_for_url("**variant=checkout_flow**")
    st = _state(page)
    api = _api(
        served_demo,
        "experiment",
        {"steps": [st["e1"], st["e2"]], "variant": st["variant"], "from": "-30d"},
    )
    (c,) = api["comparisons"]
    card = page.locator('article.abcard[data-variant="new"]')
    expect(card).to_have_class(re.compile("significant"))
    expect(card.locator("p.reading")).to_have_text(c["reading"])
    expect(card).to_contain_text(f"{c['difference'] * 100:+.1f} points")
    expect(card).to_contain_text(f"{c['p_value']:.3g}")
    assert c["p_value"] < 0.05 and 0.04 < c["difference"] < 0.25  # the planted lift, found
    accessible(page)
    shot(page, "analytics-experiment")

    # Saved to a dashboard, it shows the same variants.
    page.get_by_role("combobox", name="Dashboard").fill("Checkout test")
    page.get_by_role("button", name="Save panel").click()
    page.wait_for_url("**/dashboards/checkout-test?saved=1")
    page.get_by_role("navigation", name="Time range presets").get_by_role("link", name="-30d").click()
    page.wait_for_url("**from=-30d**")
    panel = page.locator("section.panel")
    for v in api["variants"]:
        expect(panel.locator(f'td[data-v="{v["users"]}"]').first).to_be_visible()
    accessible(page)
    shot(page, "analytics-dashboard")
    panel.get_by_role("link", name="Open in Analytics").click()
    page.wait_for_url("**/analytics/experiments?**")
    expect(page.locator('article.abcard[data-variant="new"] p.reading')).to_have_text(c["reading"])

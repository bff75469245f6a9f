"""Visualize, dashboards and the Search histogram in Chromium, on the demo data: a panel built
in Visualize and saved, its dashboard opened and its range changed, shows the numbers of
GET /api/v1/aggregate for the same parameters; a histogram bar and a drag zoom the Search range."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from obshub.events import format_ts, parse_ts
from tests.hubproc import LiveHub
from tests.web.conftest import shot
from tests.web.test_browser import accessible

pytestmark = pytest.mark.browser
MIN = 60_000_000


def _hour_range(hub: LiveHub, hours: int) -> tuple[str, str]:
    """`hours` whole hours ending after the newest demo event: a fixed range, fixed numbers."""
    newest = parse_ts(hub.get("/api/v1/search", limit=1).json()["events"][0]["ts"])
    end = newest + 60 * MIN - newest % (60 * MIN)
    return format_ts(end - hours * 60 * MIN), format_ts(end)


def _panel_table(page: Any, nth: int) -> dict[str, list[float | None]]:
    """Row label (a bucket's time) -> the cells' values, as the page's table holds them."""
    rows = page.locator("section.panel").nth(nth).locator("table.ptable tbody tr")
    out: dict[str, list[float | None]] = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        cells = row.locator("td").evaluate_all("tds => tds.map(td => td.dataset.v)")
        out[row.get_attribute("data-t") or row.locator("th").inner_text()] = [
            None if v == "" else float(v) for v in cells
        ]
    return out


def _api_columns(hub: LiveHub, params: dict[str, str]) -> tuple[list[str], dict[str, list[float | None]]]:
    body = hub.get("/api/v1/aggregate", **params).json()
    step = body["interval_s"] * 1_000_000
    start = parse_ts(body["from"])
    times = [format_ts(t) for t in range(start - start % step, parse_ts(body["to"]), step)]
    groups = body["groups"]
    at = [{p["t"]: p["value"] for p in g["series"]} for g in groups]
    return [g["key"] for g in groups], {t: [a.get(t, 0) for a in at] for t in times}


def test_build_a_panel_save_it_open_the_dashboard_change_the_range(page: Any, demo_hub: LiveHub) -> None:
    start, end = _hour_range(demo_hub, 3)
    page.goto("/visualize")
    expect(page.get_by_role("heading", name="Visualize")).to_be_visible()
    form = page.get_by_role("form", name="Aggregation")
    form.get_by_label("Query").fill("kind:log")
    form.get_by_label("Measure").fill("count")
    form.get_by_label("Group by").fill("host")
    form.get_by_label("Interval").fill("15m")
    form.get_by_label("From", exact=True).fill(start)
    form.get_by_label("To", exact=True).fill(end)
    form.get_by_label("Chart").select_option("bar")
    form.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"/visualize\?.*group_by=host"))
    expect(page.locator("svg.vchart")).to_be_visible()
    assert page.locator("svg.vchart rect.sbar").count() == 12 * page.locator("ul.legend li").count()
    accessible(page)
    shot(page, "visualize")

    name = f"Demo KPIs {uuid.uuid4().hex[:6]}"
    page.get_by_label("Panel title").fill("Requests per host")
    page.get_by_role("combobox", name="Dashboard").fill(name)
    page.get_by_role("button", name="Save panel").click()
    slug = name.lower().replace(" ", "-")
    page.wait_for_url(f"**/dashboards/{slug}?saved=1")
    expect(page.get_by_role("heading", name="Requests per host")).to_be_visible()

    # The dashboard's own range (the default -24h): change it to the 3 fixed hours, then to 1.
    for hours in (3, 1):
        start, end = _hour_range(demo_hub, hours)
        rng = page.get_by_role("form", name="Time range")
        rng.get_by_label("From", exact=True).fill(start)
        rng.get_by_label("To", exact=True).fill(end)
        rng.get_by_role("button", name="Apply").click()
        page.wait_for_url(re.compile(r"/dashboards/" + slug + r"\?from="))
        expect(page.locator("section.panel table.ptable tbody tr")).to_have_count(hours * 4)
        hosts, want = _api_columns(
            demo_hub,
            {"q": "kind:log", "measure": "count", "group_by": "host", "interval": "15m", "from": start, "to": end},
        )
        header = page.locator("section.panel").first.locator("table.ptable thead th").all_inner_texts()
        assert header == ["t", *hosts]
        assert _panel_table(page, 0) == want
        assert sum(v or 0 for vals in want.values() for v in vals) > 0
    accessible(page)
    shot(page, "dashboard")

    # A preset link changes the range for every panel; the dashboard is listed.
    page.get_by_role("link", name="-7d", exact=True).click()
    page.wait_for_url(re.compile(r"from=-7d"))
    expect(page.locator("section.panel table.ptable tbody tr").first).to_be_visible()
    page.get_by_role("link", name="Dashboards", exact=True).click()
    expect(page.get_by_role("link", name=name)).to_be_visible()


def test_histogram_bar_click_and_drag_zoom_the_search_range(page: Any, demo_hub: LiveHub) -> None:
    start, end = _hour_range(demo_hub, 3)
    page.goto(f"/search?q=service:shop-web&from={start}&to={end}")
    bars = page.locator("svg.histogram a[data-t0]")
    expect(bars.first).to_be_attached()
    n = bars.count()
    assert n == 180  # 3 h at auto's 1 min (at most 200 bars)
    accessible(page)
    shot(page, "search-histogram")
    # Drag across four bars from the busiest one: the range becomes those four buckets.
    counts = bars.evaluate_all("as => as.map(a => +a.getAttribute('aria-label').split(': ').pop())")
    a = min(counts.index(max(counts)), n - 4)
    box3, box6 = bars.nth(a).bounding_box(), bars.nth(a + 3).bounding_box()
    t0, t1 = bars.nth(a).get_attribute("data-t0"), bars.nth(a + 3).get_attribute("data-t1")
    y = box3["y"] + box3["height"] - 2
    page.mouse.move(box3["x"] + 2, y)
    page.mouse.down()
    page.mouse.move(box3["x"] + 6, y)
    page.mouse.move(box6["x"] + box6["width"] - 2, y)
    page.mouse.up()
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("from") == [t0])
    qs = parse_qs(urlsplit(page.url).query)
    assert qs["from"] == [t0] and qs["to"] == [t1] and qs["q"] == ["service:shop-web"]
    # Now a click on one bar (whichever has matches): that bucket only.
    bars = page.locator("svg.histogram a[data-t0]")
    expect(bars.first).to_be_attached()
    counts = bars.evaluate_all("as => as.map(a => +a.getAttribute('aria-label').split(': ').pop())")
    assert len(counts) == 4 and sum(counts) > 0
    one = bars.nth(counts.index(max(counts)))
    t0, t1 = one.get_attribute("data-t0"), one.get_attribute("data-t1")
    one.locator("rect.hit").click()
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("to") == [t1])
    qs = parse_qs(urlsplit(page.url).query)
    assert qs["from"] == [t0] and qs["to"] == [t1]
    count = demo_hub.get("/api/v1/aggregate", q="service:shop-web", **{"from": t0, "to": t1}).json()["total"]["count"]
    expect(page.locator("ol.events li.ev")).to_have_count(min(count, 100))


def test_public_link_in_a_fresh_browser(page: Any, browser: Any, demo_hub: LiveHub) -> None:
    name = f"Public {uuid.uuid4().hex[:6]}"
    page.goto("/visualize?measure=unique(user_id)&group_by=host&interval=")
    page.get_by_role("combobox", name="Dashboard").fill(name)
    page.get_by_role("button", name="Save panel").click()
    page.wait_for_url(re.compile(r"/dashboards/"))
    page.locator("details.dashactions summary").click()
    page.get_by_role("button", name="Publish read-only link").click()
    link = page.get_by_label("Public link").input_value()
    assert "/public/dashboards/" in link
    ctx = browser.new_context()  # no cookie
    try:
        anon = ctx.new_page()
        anon.goto(link)
        expect(anon.get_by_role("heading", name=name)).to_be_visible()
        expect(anon.get_by_role("navigation", name="Main")).to_have_count(0)
        expect(anon.locator("form")).to_have_count(0)
        hosts = anon.locator("table.ptable tbody th").all_inner_texts()
        api = demo_hub.get("/api/v1/aggregate", measure="unique(user_id)", group_by="host").json()
        assert hosts == [g["key"] for g in api["groups"]]
        accessible(anon)
        shot(anon, "public-dashboard")
    finally:
        ctx.close()

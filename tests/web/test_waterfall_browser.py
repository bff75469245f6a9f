"""The demo's OpenTelemetry trace (`make run`, i.e. `obshub serve --demo`) as a span waterfall in
a real browser: two services on two hosts (web-2's clock 1.5 s slow), a slow database span, an
exception, an orphan."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from obshub.demo import DEMO_STORY
from tests.web.conftest import DemoServe, shot
from tests.web.test_browser import accessible

pytestmark = pytest.mark.browser


def test_served_demo_trace_shows_the_waterfall(served_page: Any, served_demo: DemoServe) -> None:
    tid = DEMO_STORY["otel_trace"]
    api = served_demo.get(f"/api/v1/trace/{tid}").json()
    # web-2 (shop-web) is 1.5 s slow: corrected, shop-api's server span starts 5 ms after the
    # client span that called it, not 1.5 s later.
    by = {(s["service"], s["name"]): s for s in api["spans"]}
    call, served = by[("shop-web", "POST /internal/orders")], by[("shop-api", "POST /internal/orders")]
    assert 0 < served["offset_ms"] - call["offset_ms"] < 50, api["spans"]

    page = served_page
    page.goto(f"/trace/{tid}")
    spans = page.locator("svg.waterfall g.span")
    expect(spans.locator("text.spanlabel")).to_have_text(
        [
            "POST /checkout shop-web@web-2",
            "render cart shop-web@web-2",
            "POST /internal/orders shop-web@web-2",
            "POST /internal/orders shop-api@web-3",
            "SELECT orders shop-api@web-3",
            "charge card shop-api@web-3",
            "⚠ orphan · publish order.failed shop-api@web-3",
        ]
    )
    critical = page.locator("svg.waterfall g.span.critical text.spanlabel")
    expect(critical).to_have_count(4)
    expect(critical.last).to_contain_text("charge card")
    slow = page.locator("svg.waterfall g.span.slowest text.spanlabel")
    expect(slow).to_have_text(["SELECT orders shop-api@web-3", "charge card shop-api@web-3"])
    expect(page.locator("svg.waterfall g.span.err")).to_have_count(4)
    # The exception and the slow-query log sit on their spans' bars; each links to its row.
    db = spans.filter(has_text="SELECT orders")
    expect(db.locator("a.spanlog")).to_have_count(1)
    expect(spans.filter(has_text="charge card").locator("a.spanlog.err")).to_have_count(1)
    expect(page.locator(".waterfall .orphancount")).to_have_text("1 orphan (parent not in the trace)")
    db.locator("a.spanlog").click()
    row = page.locator("table.evlist tr:target")
    expect(row).to_contain_text("slow query: 900 ms")
    # The per-host swimlanes are still there, next to the waterfall.
    expect(page.locator("svg.swimlanes text.hostlabel")).to_have_text(["web-2", "web-3"])
    accessible(page)
    shot(page, "trace-waterfall")

"""The Checks page and a public status page in Chromium: a check going down shows its reason,
the 90-day bar shows days without data as such; the status page, opened without any token,
shows the public check only and no target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.hubproc import wait_until
from tests.web.checks_site import Site, site  # noqa: F401  (module fixture)
from tests.web.conftest import _logged_in_tab, shot
from tests.web.test_browser import A11Y_CHECK, accessible

pytestmark = pytest.mark.browser


@pytest.fixture
def tab(browser: Any, site: Site) -> Iterator[Any]:  # noqa: F811
    yield from _logged_in_tab(browser, site.hub)


def test_checks_page_shows_a_check_going_down_with_its_reason(tab: Any, site: Site) -> None:  # noqa: F811
    site.answer(503)
    try:
        wait_until(lambda: site.results("name:shop attrs.status:503"), 30, "a failed probe of shop")
        tab.get_by_role("link", name="Checks").click()
        tab.wait_for_url("**/checks")
        shop = tab.locator("section#check-shop")
        expect(shop.locator(".cstate")).to_have_text("down")
        expect(shop.locator("ul.failures li").first).to_contain_text("503")
        expect(shop.locator(".uptime-24h")).to_contain_text("%")
        days = shop.locator("svg.days rect.day")
        expect(days).to_have_count(90)
        nodata = shop.locator("svg.days rect.day-nodata").count()
        assert 80 <= nodata <= 88, nodata  # only today, 3 and 10 days ago (and at most yesterday) hold results
        assert shop.locator("svg.days rect.day-nodata title").first.text_content().endswith(": no data")
        expect(tab.locator("section#check-internal .cstate")).to_have_text("down")
        expect(tab.locator("section#check-internal ul.failures li").first).to_contain_text("ConnectError")
        accessible(tab)
        shot(tab, "checks")
    finally:
        site.answer(200)


def test_public_status_page_without_a_token(browser: Any, site: Site) -> None:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1100, "height": 800}, base_url=site.hub.url)
    try:
        pg = ctx.new_page()
        pg.goto("/status/test")
        expect(pg.get_by_role("heading", name="Status of test")).to_be_visible()
        expect(pg.locator("section.check h2")).to_have_text(["shop"])  # the private check is not there
        text = pg.locator("main").inner_text()
        for secret in ("internal", "127.0.0.1", "shop-health", "internal-admin", "ConnectError"):
            assert secret not in text and secret not in pg.content(), secret
        expect(pg.locator("svg.days rect.day")).to_have_count(90)
        assert pg.locator("nav").count() == 0  # no session: no navigation of the private pages
        assert [p for p in pg.evaluate(A11Y_CHECK) if p != "no <nav> landmark"] == []
        shot(pg, "status-page")
        assert ctx.cookies() == []  # nothing was logged in
    finally:
        ctx.close()

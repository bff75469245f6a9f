"""The Checks page (`/checks`, a web session) and the public status page (`/status/<project>`,
no token) over HTTP: what they show, what the status page must never show, who may see them."""

from __future__ import annotations

import re
import time

import httpx

from tests.web.checks_site import Site, site  # noqa: F401  (module fixture)
from tests.web.conftest import login_client


def test_checks_page_needs_a_session(site: Site) -> None:  # noqa: F811
    r = httpx.get(f"{site.hub.url}/checks")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fchecks")


def test_checks_page_shows_state_uptime_bar_and_failures(site: Site) -> None:  # noqa: F811
    with login_client(site.hub) as c:
        r = c.get("/checks")
    assert r.status_code == 200, r.text
    html = r.text
    assert '<a href="/checks" aria-current="page">Checks</a>' in html
    shop = html.split('id="check-shop"', 1)[1].split("</section>", 1)[0]
    internal = html.split('id="check-internal"', 1)[1].split("</section>", 1)[0]
    assert "cstate-down" in internal and "ConnectError" in internal  # the reason of its failures
    assert 'class="tag">public' in shop and "public" not in internal.split("</header>")[0]
    cells = re.findall(r'<rect class="day day-(\w+)"', shop)
    assert len(cells) == 90
    today, three, ten = cells[-1], cells[-4], cells[-11]
    assert today in ("up", "partial", "down") and three == "up" and ten == "down"  # 1 of 2: 50%
    assert cells[-5:-10:-1] == ["nodata"] * 5 and cells[0] == "nodata"  # gaps are "no data", not up
    assert "no data" in shop and "50.00% up (1 of 2 probes)" in shop
    assert "<circle" in shop  # the response time of the last 24 h
    assert "Public status page" in html


def test_status_page_public_checks_only_without_a_token(site: Site) -> None:  # noqa: F811
    r = httpx.get(f"{site.hub.url}/status/test")  # no token, no cookie
    assert r.status_code == 200, r.text
    html = r.text
    assert "shop" in html and "internal" not in html
    port = site.shop.rsplit(":", 1)[1].split("/")[0]
    for secret in (port, "shop-health", "internal-admin", "ConnectError", "127.0.0.1", "GET "):
        assert secret not in html, secret
    assert len(re.findall(r'<rect class="day day-', html)) == 90
    assert "/logout" not in html  # no session UI
    # Only listed projects have a page; any other name is a 404 without reading the store.
    assert httpx.get(f"{site.hub.url}/status/other").status_code == 404
    site.hub.new_project("unlisted")
    assert httpx.get(f"{site.hub.url}/status/unlisted").status_code == 404


def test_api_lists_public_and_tls_fields(site: Site) -> None:  # noqa: F811
    got = {c["name"]: c for c in site.hub.get("/api/v1/checks").json()["checks"]}
    assert got["shop"]["public"] is True and got["internal"]["public"] is False
    assert got["shop"]["tls_expires_at"] is None  # http: no certificate


def test_public_flag_over_the_api(site: Site) -> None:  # noqa: F811
    with site.hub.client(site.hub.admin_token) as c:
        r = c.post("/api/v1/checks", json={"name": "api-pub", "target": "http://example.com/", "public": True})
        assert r.status_code == 201 and r.json()["public"] is True, r.text
        r = c.post("/api/v1/checks", json={"name": "api-pub", "target": "http://example.com/", "public": "yes"})
        assert r.status_code == 400 and r.json()["error"].startswith("public: expected true or false"), r.text
        r = c.post("/api/v1/checks", json={"name": "x", "target": "https://example.com/", "ca": "/etc/passwd"})
        assert r.status_code == 400 and r.json()["error"].startswith("ca: only in the hub config file"), r.text
        assert c.delete("/api/v1/checks/api-pub").status_code == 200


def test_status_page_is_cached(site: Site) -> None:  # noqa: F811
    """At most one store read per project and STATUS_TTL_S, whatever the traffic."""
    first = httpx.get(f"{site.hub.url}/status/test").text
    started = time.monotonic()
    for _ in range(20):
        assert httpx.get(f"{site.hub.url}/status/test").text == first
    assert time.monotonic() - started < 5

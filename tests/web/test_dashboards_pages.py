"""Search histogram, Visualize, Dashboards and public dashboard links over HTTP, against a live
hub with the demo data (tests/web/conftest.py): every number a page shows is compared with
GET /api/v1/aggregate's for the same parameters; forms refuse a missing CSRF token and a
cross-origin post; a public link shows only its dashboard and stops working when revoked."""

from __future__ import annotations

import html
import itertools
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from obshub.events import format_ts, parse_ts
from tests.hubproc import LiveHub
from tests.web.conftest import login_client

MIN = 60_000_000


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF field in the page"
    return m.group(1)


def _table(page: str, nth: int = 0) -> list[list[str]]:
    """The cells of the nth panel table: [row label, values as rendered in data-v...]."""
    body = re.findall(r'<table class="ptable">(.*?)</table>', page, re.S)[nth]
    rows = []
    for tr in re.findall(r"<tbody>(.*?)</tbody>", body, re.S)[0].split("</tr>"):
        if "<th" not in tr:
            continue
        label = re.search(r'<tr(?: data-t="([^"]+)")?\s*>\s*<th scope="row">([^<]*)</th>', tr)
        assert label
        rows.append([label.group(1) or html.unescape(label.group(2)), *re.findall(r'data-v="([^"]*)"', tr)])
    return rows


def _num(raw: str) -> float | None:
    return None if raw == "" else float(raw)


def _api_series(hub: LiveHub, **params: str) -> dict[str, Any]:
    r = hub.get("/api/v1/aggregate", **params)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _fixed_range(hub: LiveHub) -> tuple[str, str]:
    """A closed range around the demo data (3 h, on whole hours, so 15 and 30 min buckets fit
    exactly): numbers that do not move while a test runs."""
    newest = hub.get("/api/v1/search", limit=1).json()["events"][0]["ts"]
    end = parse_ts(newest) + 60 * MIN
    end -= end % (60 * MIN)
    return format_ts(end - 180 * MIN), format_ts(end)


def _save(c: httpx.Client, hub: LiveHub, dashboard: str, **fields: str) -> httpx.Response:
    page = c.get("/visualize").text
    return c.post(
        "/visualize/save",
        data={"csrf": _csrf(page), "dashboard": dashboard, **fields},
        headers={"Origin": hub.url},
    )


def test_search_histogram_counts_are_the_aggregate_and_each_bar_narrows_the_range(
    web: httpx.Client, demo_hub: LiveHub
) -> None:
    start, end = _fixed_range(demo_hub)
    r = web.get("/search", params={"q": "service:shop-api", "from": start, "to": end})
    assert r.status_code == 200
    links = re.findall(r'<a href="([^"]+)" data-t0="([^"]+)" data-t1="([^"]+)" aria-label="[^"]*: (\d+)"', r.text)
    assert links, "no histogram bars"
    api = _api_series(demo_hub, q="service:shop-api", **{"from": start, "to": end}, interval="auto")
    by_t = {p["t"]: p["count"] for p in api["total"]["series"]}
    assert sum(int(n) for *_, n in links) == api["total"]["count"] > 0
    for _, t0, _, n in links:
        assert int(n) == by_t.get(t0, 0)
    # Consecutive buckets, one interval each, covering the range.
    step = api["interval_s"] * 1_000_000
    assert _t(links[0][1]) <= _t(start) < _t(links[0][2]) and _t(links[-1][2]) >= _t(end)
    for (_, a0, a1, _), (_, b0, _, _) in itertools.pairwise(links):
        assert _t(a1) - _t(a0) == step and a1 == b0
    href, t0, t1, n = max(links, key=lambda x: int(x[3]))
    qs = parse_qs(urlsplit(html.unescape(href)).query)
    assert qs["from"] == [t0] and qs["to"] == [t1] and qs["q"] == ["service:shop-api"]
    narrowed = web.get(html.unescape(href))
    assert narrowed.status_code == 200
    shown = len(re.findall(r'<li class="ev', narrowed.text))
    assert shown == min(int(n), 100)


def test_search_without_a_start_or_over_years_has_no_histogram(web: httpx.Client) -> None:
    r = web.get("/search", params={"from": ""})
    assert r.status_code == 200 and 'class="chart histogram"' not in r.text
    # 10 years are 3,650 daily buckets, more than an aggregation takes: the search still answers.
    r = web.get("/search", params={"from": "-3650d", "q": "service:shop-api"})
    assert r.status_code == 200 and 'class="chart histogram"' not in r.text and '<li class="ev' in r.text


def test_visualize_table_and_csv_are_the_apis_numbers(web: httpx.Client, demo_hub: LiveHub) -> None:
    start, end = _fixed_range(demo_hub)
    params = {"q": "kind:log", "measure": "avg(duration_ms)", "group_by": "host", "interval": "30m"}
    r = web.get("/visualize", params={**params, "from": start, "to": end, "chart": "bar"})
    assert r.status_code == 200, r.text
    assert '<svg viewBox="0 0 900 240"' in r.text and 'class="sbar' in r.text
    api = _api_series(demo_hub, **params, **{"from": start, "to": end})
    hosts = [g["key"] for g in api["groups"]]
    header = re.search(r'<table class="ptable">\s*<thead><tr>(.*?)</tr>', r.text, re.S)
    assert header and re.findall(r">([^<]+)</th>", header.group(1)) == ["t", *hosts]
    rows = _table(r.text)
    assert len(rows) == 6  # 3 h in 30 min buckets
    for g_i, g in enumerate(api["groups"]):
        at = {p["t"]: p["value"] for p in g["series"]}
        for row in rows:
            want, got = at.get(row[0]), _num(row[1 + g_i])
            assert (want is None and got is None) or (
                want is not None and got is not None and got == pytest.approx(want)
            ), (g["key"], row)
    csv_link = re.search(r'<a href="([^"]+)" download>CSV</a>', r.text)
    assert csv_link
    csv = web.get(html.unescape(csv_link.group(1)))
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text == demo_hub.get("/api/v1/aggregate", **params, format="csv", **{"from": start, "to": end}).text


def test_visualize_shows_a_bad_parameter_as_a_400_naming_it(web: httpx.Client) -> None:
    r = web.get("/visualize", params={"measure": "median(duration_ms)"})
    assert r.status_code == 400 and "measure: expected one of" in r.text
    r = web.get("/visualize", params={"interval": "1m", "from": "-30d"})
    assert r.status_code == 400 and "interval:" in r.text
    assert web.get("/visualize.csv", params={"top": "0"}).status_code == 400


def test_save_panels_open_the_dashboard_change_its_range(web: httpx.Client, demo_hub: LiveHub) -> None:
    name = f"Shop KPIs {uuid.uuid4().hex[:6]}"
    slug = name.lower().replace(" ", "-")
    r = _save(web, demo_hub, name, title="Requests", measure="count", q="kind:log", interval="15m", chart="bar")
    assert r.status_code == 303 and r.headers["location"] == f"/dashboards/{slug}?saved=1"
    r = _save(web, demo_hub, name, title="Users by host", measure="unique(user_id)", group_by="host")
    assert r.headers["location"] == f"/dashboards/{slug}?saved=2"
    listing = web.get("/dashboards").text
    assert f'<a href="/dashboards/{slug}">{html.escape(name)}</a>' in listing
    start, end = _fixed_range(demo_hub)
    page = web.get(f"/dashboards/{slug}", params={"from": start, "to": end})
    assert page.status_code == 200
    assert re.findall(r'<h2 id="panel-\d+">([^<]+)</h2>', page.text) == ["Requests", "Users by host"]
    api = _api_series(demo_hub, q="kind:log", measure="count", interval="15m", **{"from": start, "to": end})
    at = {p["t"]: p["count"] for p in api["total"]["series"]}
    rows = _table(page.text, 0)
    assert len(rows) == 12 and {r[0]: int(r[1]) for r in rows} == {t: at.get(t, 0) for t, *_ in rows}
    api2 = _api_series(demo_hub, measure="unique(user_id)", group_by="host", **{"from": start, "to": end})
    rows2 = _table(page.text, 1)
    assert {r[0]: int(r[2]) for r in rows2} == {g["key"]: g["value"] for g in api2["groups"]}
    # Another range: other numbers, still the API's.
    narrow = web.get(f"/dashboards/{slug}", params={"from": start, "to": format_ts(_t(start) + 60 * MIN)})
    rows = _table(narrow.text, 0)
    assert len(rows) == 4
    api = _api_series(
        demo_hub,
        q="kind:log",
        measure="count",
        interval="15m",
        **{"from": start, "to": format_ts(_t(start) + 60 * MIN)},
    )
    assert sum(int(r[1]) for r in rows) == api["total"]["count"]
    # A bad range is said, and the default range shown.
    bad = web.get(f"/dashboards/{slug}", params={"from": "yesterday"})
    assert bad.status_code == 400 and "from:" in bad.text and "Requests" in bad.text
    # Auto-refresh: off by default, chosen in the URL.
    assert 'http-equiv="refresh"' not in page.text
    assert '<meta http-equiv="refresh" content="60">' in web.get(f"/dashboards/{slug}", params={"refresh": "60"}).text


def _t(ts: str) -> int:
    return parse_ts(ts)


def test_dashboard_forms_refuse_missing_csrf_and_cross_origin(web: httpx.Client, demo_hub: LiveHub) -> None:
    name = f"guarded {uuid.uuid4().hex[:6]}"
    assert _save(web, demo_hub, name, measure="count").status_code == 303
    slug = name.replace(" ", "-")
    token = _csrf(web.get(f"/dashboards/{slug}").text)
    no_csrf = web.post(f"/dashboards/{slug}/action", data={"action": "delete"}, headers={"Origin": demo_hub.url})
    assert no_csrf.status_code == 403
    cross = web.post(
        f"/dashboards/{slug}/action",
        data={"action": "delete", "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    saved = web.post("/visualize/save", data={"dashboard": name, "measure": "count"}, headers={"Origin": demo_hub.url})
    assert saved.status_code == 403
    assert web.get(f"/dashboards/{slug}").status_code == 200  # nothing was deleted
    # Bad input: a 400 naming the field, nothing stored.
    bad = _save(web, demo_hub, name, measure="count", chart="pie")
    assert bad.status_code == 400 and "chart: expected one of line, bar" in bad.text
    bad = _save(web, demo_hub, "  !!  ", measure="count")
    assert bad.status_code == 400 and "dashboard:" in bad.text
    bad = web.post(
        f"/dashboards/{slug}/action",
        data={"action": "delete-panel", "panel": "7", "csrf": token},
        headers={"Origin": demo_hub.url},
    )
    assert bad.status_code == 404
    # Without a session: a login redirect (GET) or 401 (POST), no data.
    with httpx.Client(base_url=demo_hub.url) as anon:
        assert anon.get(f"/dashboards/{slug}").status_code == 303
        assert anon.post(f"/dashboards/{slug}/action", data={"action": "delete"}).status_code == 401


def test_remove_a_panel_then_delete_the_dashboard(web: httpx.Client, demo_hub: LiveHub) -> None:
    name = f"short lived {uuid.uuid4().hex[:6]}"
    slug = name.replace(" ", "-")
    for title in ("one", "two"):
        _save(web, demo_hub, name, title=title, measure="count")
    token = _csrf(web.get(f"/dashboards/{slug}").text)
    post = {"csrf": token}
    r = web.post(
        f"/dashboards/{slug}/action",
        data={**post, "action": "delete-panel", "panel": "0"},
        headers={"Origin": demo_hub.url},
    )
    assert r.status_code == 303
    assert re.findall(r'<h2 id="panel-\d+">([^<]+)</h2>', web.get(f"/dashboards/{slug}").text) == ["two"]
    r = web.post(f"/dashboards/{slug}/action", data={**post, "action": "delete"}, headers={"Origin": demo_hub.url})
    assert r.status_code == 303
    assert web.get(f"/dashboards/{slug}").status_code == 404
    assert f"/dashboards/{slug}" not in web.get("/dashboards").text


def _publish(web: httpx.Client, hub: LiveHub, slug: str) -> str:
    token = _csrf(web.get(f"/dashboards/{slug}").text)
    r = web.post(f"/dashboards/{slug}/action", data={"csrf": token, "action": "publish"}, headers={"Origin": hub.url})
    assert r.status_code == 200, r.text
    m = re.search(r'class="publiclink" value="([^"]+)"', r.text)
    assert m
    return m.group(1)


def test_public_link_shows_only_its_dashboard_and_dies_when_revoked(web: httpx.Client, demo_hub: LiveHub) -> None:
    name, other = f"public {uuid.uuid4().hex[:6]}", f"private {uuid.uuid4().hex[:6]}"
    _save(web, demo_hub, name, title="Errors per host", q="level:error", group_by="host", measure="count")
    _save(web, demo_hub, other, title="Secret panel", measure="count")
    slug = name.replace(" ", "-")
    link = _publish(web, demo_hub, slug)
    path = urlsplit(link).path
    token = path.rsplit("/", 1)[1]
    assert len(token) >= 22  # ≥ 128 bits, URL-safe base64
    with httpx.Client(base_url=demo_hub.url) as anon:  # no session, no token
        r = anon.get(path)
        assert r.status_code == 200
        assert "Errors per host" in r.text and "Secret panel" not in r.text
        assert '<nav aria-label="Main">' not in r.text and "csrf" not in r.text and "Remove panel" not in r.text
        assert r.headers["x-robots-tag"] == "noindex"
        api = _api_series(demo_hub, q="level:error", group_by="host", measure="count")
        assert {row[0]: int(row[1]) for row in _table(r.text)} == {g["key"]: g["count"] for g in api["groups"]}
        # The range: presets only; the query cannot be changed.
        assert anon.get(path, params={"from": "-7d"}).status_code == 200
        assert anon.get(path, params={"from": "2020-01-01T00:00:00Z"}).status_code == 400
        ignored = anon.get(path, params={"q": "level:info", "measure": "sum(duration_ms)"})
        assert ignored.status_code == 200 and "sum(duration_ms)" not in ignored.text
        assert anon.get(path[:-1] + ("A" if path[-1] != "A" else "B")).status_code == 404
        assert anon.get("/public/dashboards/short").status_code == 404
        # Listed as published; the link is in no page and the store has only its hash.
        assert "published" in web.get("/dashboards").text and token not in web.get(f"/dashboards/{slug}").text
        # A new link ends the old one; revoke ends the new one (past the page cache).
        newer = urlsplit(_publish(web, demo_hub, slug)).path
        demo_hub.app.state.public_dashboards.pages.clear()
        assert anon.get(path).status_code == 404 and anon.get(newer).status_code == 200
        csrf = _csrf(web.get(f"/dashboards/{slug}").text)
        r = web.post(
            f"/dashboards/{slug}/action", data={"csrf": csrf, "action": "revoke"}, headers={"Origin": demo_hub.url}
        )
        assert r.status_code == 303
        demo_hub.app.state.public_dashboards.pages.clear()
        assert anon.get(newer).status_code == 404


def test_public_page_is_computed_once_per_ttl(web: httpx.Client, demo_hub: LiveHub) -> None:
    """Visitors share one computation per link and range for PUBLIC_TTL_S: a panel saved after
    the first view shows only once the cached page expires."""
    name = f"cached {uuid.uuid4().hex[:6]}"
    _save(web, demo_hub, name, title="first", measure="count")
    path = urlsplit(_publish(web, demo_hub, name.replace(" ", "-"))).path
    with httpx.Client(base_url=demo_hub.url) as anon:
        assert "first" in anon.get(path).text
        _save(web, demo_hub, name, title="second", measure="count")
        assert "second" not in anon.get(path).text
        demo_hub.app.state.public_dashboards.pages.clear()
        assert "second" in anon.get(path).text


def test_random_tokens_and_ranges_do_not_flush_the_public_cache(web: httpx.Client, demo_hub: LiveHub) -> None:
    """Only a live link's valid ranges are cached: a flood of made-up tokens or `from` values
    neither grows the cache nor evicts the real page (which then would be computed again)."""
    name = f"flood {uuid.uuid4().hex[:6]}"
    _save(web, demo_hub, name, title="first", measure="count")
    path = urlsplit(_publish(web, demo_hub, name.replace(" ", "-"))).path
    cache = demo_hub.app.state.public_dashboards
    with httpx.Client(base_url=demo_hub.url) as anon:
        assert "first" in anon.get(path).text
        before = dict(cache.pages)
        _save(web, demo_hub, name, title="second", measure="count")
        for i in range(30):
            assert anon.get(f"/public/dashboards/made-up-{i}").status_code == 404
            assert anon.get(path, params={"from": f"-{i}x"}).status_code == 400
        assert cache.pages.keys() == before.keys()
        assert "second" not in anon.get(path).text  # still the cached page


def test_another_projects_session_cannot_see_the_dashboard(web: httpx.Client, demo_hub: LiveHub) -> None:
    name = f"mine {uuid.uuid4().hex[:6]}"
    _save(web, demo_hub, name, measure="count")
    creds = demo_hub.new_project(f"other-{uuid.uuid4().hex[:6]}")

    class Other:
        url = demo_hub.url
        read_token = creds["read_token"]

    with login_client(Other) as c:  # type: ignore[arg-type]
        assert c.get(f"/dashboards/{name.replace(' ', '-')}").status_code == 404
        assert name not in c.get("/dashboards").text

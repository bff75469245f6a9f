"""The Analytics page's tabs over HTTP, against a live hub with the demo data (its four weeks of
product events: signups by campaign, the checkout_flow A/B test, returning logins): every number
a tab shows and every CSV cell is compared with the API's answer to the same request; bad input
is a 400 page naming the field, never a 500; a tab's URL is a permalink (it round-trips through
a saved dashboard panel and back); saved analyses export and import as dashboard JSON."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from starlette.datastructures import QueryParams

from obshub.events import format_ts
from obshub.web.analytics_params import from_query, to_query
from tests.hubproc import LiveHub

DAY = 86_400_000_000
STEPS = ["signup", "add_to_cart", "checkout", "purchase"]


@pytest.fixture(scope="module")
def span() -> tuple[str, str]:
    """A closed 30-day range ending now: every request of a test sees the same events."""
    end = time.time_ns() // 1000
    return format_ts(end - 30 * DAY), format_ts(end)


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m
    return m.group(1)


def _csv(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(r.text)))


def _num(v: Any) -> str:
    """A JSON number as the CSV writes it (Python's str), None as an empty cell."""
    return "" if v is None else str(v)


def _api(hub: LiveHub, analysis: str, body: dict[str, Any]) -> dict[str, Any]:
    with hub.client(hub.read_token) as c:
        r = c.post(f"/api/v1/analytics/{analysis}", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _dv(page: str, attr: str, value: str) -> list[str]:
    """The data-v cells of the table row marked attr="value"."""
    m = re.search(rf'<tr {attr}="{re.escape(value)}"[^>]*>(.*?)</tr>', page, re.S)
    assert m, f"no row {attr}={value}"
    return re.findall(r'data-v="([^"]*)"', m.group(1))


def test_funnel_tab_and_csv_are_the_api_answer(web: httpx.Client, demo_hub: LiveHub, span: tuple[str, str]) -> None:
    start, end = span
    params = {f"e{i}": s for i, s in enumerate(STEPS, 1)} | {"window": "1d", "from": start, "to": end}
    api = _api(demo_hub, "funnel", {"steps": STEPS, "window": "1d", "from": start, "to": end})
    assert api["steps"][0]["users"] == 1600  # every demo signup is in the range
    r = web.get("/analytics/funnels", params=params)
    assert r.status_code == 200
    for i, s in enumerate(api["steps"], 1):
        shown = _dv(r.text, 'data-group="all" data-step', str(i))
        assert shown == [_num(s["users"]), _num(s["from_previous"]), _num(s["from_first"]), _num(s["median_seconds"])]
    rows = _csv(web.get("/analytics/funnels", params={**params, "format": "csv"}))
    assert [
        [r["step"], r["event"], r["users"], r["from_previous"], r["from_first"], r["median_seconds"]] for r in rows
    ] == [
        [
            str(i),
            s["event"],
            _num(s["users"]),
            _num(s["from_previous"]),
            _num(s["from_first"]),
            _num(s["median_seconds"]),
        ]
        for i, s in enumerate(api["steps"], 1)
    ]
    # The breakdown: each campaign's rows, as the API breaks them down.
    api = _api(demo_hub, "funnel", {"steps": STEPS, "window": "1d", "breakdown": "campaign", "from": start, "to": end})
    rows = _csv(web.get("/analytics/funnels", params={**params, "breakdown": "campaign", "format": "csv"}))
    want = [("all", api["steps"])] + [(g["value"], g["steps"]) for g in api["breakdown"]]
    assert {g for g, _ in want} == {"all", "search", "newsletter", "social", "partner"}
    assert [(r["group"], r["step"], r["users"], r["from_first"]) for r in rows] == [
        (g, str(i), _num(s["users"]), _num(s["from_first"])) for g, st in want for i, s in enumerate(st, 1)
    ]
    page = web.get("/analytics/funnels", params={**params, "breakdown": "campaign"})
    assert _dv(page.text, 'data-group="social" data-step', "4")[0] == _num(api["breakdown"][2]["steps"][3]["users"])


def test_funnel_and_experiment_by_session_are_the_api_answer(
    web: httpx.Client, demo_hub: LiveHub, span: tuple[str, str]
) -> None:
    """`unit=session`: the tab, its CSV (a `sessions` column) and the experiment card count
    sessions as the API does."""
    start, end = span
    params = {f"e{i}": s for i, s in enumerate(STEPS, 1)} | {
        "window": "1d",
        "unit": "session",
        "from": start,
        "to": end,
    }
    api = _api(demo_hub, "funnel", {"steps": STEPS, "window": "1d", "unit": "session", "from": start, "to": end})
    assert api["unit"] == "session" and api["steps"][0]["sessions"] > 0
    page = web.get("/analytics/funnels", params=params)
    assert page.status_code == 200 and "Entered (sessions)" in page.text
    for i, s in enumerate(api["steps"], 1):
        assert _dv(page.text, 'data-group="all" data-step', str(i))[0] == _num(s["sessions"])
    rows = _csv(web.get("/analytics/funnels", params={**params, "format": "csv"}))
    assert [r["sessions"] for r in rows] == [_num(s["sessions"]) for s in api["steps"]]
    body = {"steps": ["checkout", "purchase"], "variant": "checkout_flow", "unit": "session", "from": start, "to": end}
    api = _api(demo_hub, "experiment", body)
    shown = {
        "e1": "checkout",
        "e2": "purchase",
        "variant": "checkout_flow",
        "unit": "session",
        "from": start,
        "to": end,
    }
    rows = _csv(web.get("/analytics/experiments", params={**shown, "format": "csv"}))
    assert {r["variant"]: r["sessions"] for r in rows} == {v["value"]: _num(v["sessions"]) for v in api["variants"]}
    bad = web.get("/analytics/funnels", params={**params, "unit": "visitor"})
    assert bad.status_code == 400 and "unit" in bad.text


def test_retention_tab_and_csv_are_the_api_answer(web: httpx.Client, demo_hub: LiveHub, span: tuple[str, str]) -> None:
    start, end = span
    body = {"start": {"event": "signup"}, "return": {"event": "login"}, "period": "week", "bounded": True}
    api = _api(demo_hub, "retention", {**body, "from": start, "to": end})
    params = {"start": "signup", "return": "login", "period": "week", "bounded": "1", "from": start, "to": end}
    r = web.get("/analytics/retention", params=params)
    assert r.status_code == 200
    assert len(api["cohorts"]) >= 4 and any(n for c in api["cohorts"] for n in c["returned"] if n)
    for c in api["cohorts"]:
        assert _dv(r.text, "data-cohort", c["cohort"]) == [_num(n) for n in c["returned"]]
    rows = _csv(web.get("/analytics/retention", params={**params, "format": "csv"}))
    assert [list(row.values()) for row in rows] == [
        [c["cohort"], str(c["users"]), *(_num(n) for n in c["returned"])] for c in api["cohorts"]
    ]
    assert list(rows[0]) == ["cohort", "users", *(f"week_{i}" for i in range(1, 9))]
    # Unbounded answers differ, and the tab follows.
    unb = _api(demo_hub, "retention", {**body, "bounded": False, "from": start, "to": end})
    rows = _csv(web.get("/analytics/retention", params={**params, "bounded": "0", "format": "csv"}))
    assert [row["week_1"] for row in rows] == [_num(c["returned"][0]) for c in unb["cohorts"]]


def test_experiment_tab_reads_the_planted_lift_as_the_api_does(
    web: httpx.Client, demo_hub: LiveHub, span: tuple[str, str]
) -> None:
    start, end = span
    api = _api(
        demo_hub,
        "experiment",
        {"steps": ["checkout", "purchase"], "variant": "checkout_flow", "from": start, "to": end},
    )
    (c,) = api["comparisons"]
    # The demo plants +9 points (41% -> 50%) for `new`: found, and significant.
    assert c["control"] == "control" and c["variant"] == "new"
    assert c["enough_data"] and c["p_value"] < 0.05 and c["ci95"][0] > 0
    params = {"variant": "checkout_flow", "e1": "checkout", "e2": "purchase", "from": start, "to": end}
    r = web.get("/analytics/experiments", params=params)
    assert r.status_code == 200
    card = re.search(r'<article class="abcard significant" data-variant="new">(.*?)</article>', r.text, re.S)
    assert card, "no significant result card for `new`"
    assert re.findall(r'data-v="([^"]*)"', card.group(1)) == [
        _num(c["control_rate"]),
        _num(c["variant_rate"]),
        _num(c["difference"]),
        _num(c["p_value"]),
        f"{c['ci95'][0]},{c['ci95'][1]}",
    ]
    assert c["reading"] in html.unescape(card.group(1))
    rows = _csv(web.get("/analytics/experiments", params={**params, "format": "csv"}))
    assert [(r["variant"], r["users"], r["converted"]) for r in rows] == [
        (v["value"], str(v["users"]), str(v["converted"])) for v in api["variants"]
    ]
    new = rows[1]
    assert (new["difference"], new["p_value"], new["ci95_low"], new["ci95_high"], new["reading"]) == (
        _num(c["difference"]),
        _num(c["p_value"]),
        _num(c["ci95"][0]),
        _num(c["ci95"][1]),
        c["reading"],
    )
    assert rows[0]["rate"] == _num(c["control_rate"]) and rows[0]["difference"] == ""


def test_trends_compare_and_breakdown_csv_are_the_series_api(
    web: httpx.Client, demo_hub: LiveHub, span: tuple[str, str]
) -> None:
    start, end = span
    common = {"interval": "day", "from": start, "to": end}
    rows = _csv(
        web.get("/analytics", params={**common, "event": ["signup", "purchase"], "unique": "1", "format": "csv"})
    )
    assert list(rows[0]) == ["t", "signup", "purchase"]
    for name in ("signup", "purchase"):
        api = demo_hub.get("/api/v1/analytics/series", event=name, unique="1", **common).json()
        assert [(r["t"], r[name]) for r in rows] == [(p["t"], str(p["count"])) for p in api["points"]]
    page = web.get("/analytics", params={**common, "event": ["signup", "purchase"]})
    assert page.status_code == 200 and "signup vs purchase" in page.text
    # One event by campaign, top 2, with a filter: the API's breakdown and `other`.
    q = "plan:free OR plan:pro"
    api = demo_hub.get("/api/v1/analytics/series", event="signup", breakdown="campaign", top="2", q=q, **common).json()
    rows = _csv(
        web.get(
            "/analytics",
            params={**common, "event": "signup", "breakdown": "campaign", "top": "2", "q": q, "format": "csv"},
        )
    )
    names = [b["value"] for b in api["breakdown"]]
    assert list(rows[0]) == ["t", *names, "other"]
    for b in [*api["breakdown"], {"value": "other", **api["other"]}]:
        assert [r[b["value"]] for r in rows] == [str(p["count"]) for p in b["points"]]


BAD = [
    ("/analytics/funnels", {"e1": "signup", "e2": "no_such_event"}, "e2: no event named 'no_such_event'"),
    ("/analytics/funnels", {"e1": "signup", "e2": "purchase", "window": "a week"}, "window:"),
    ("/analytics/funnels", {"e1": "signup", "e2": "purchase", "window": "0d"}, "window:"),
    ("/analytics/funnels", {"e1": "signup", "e11": "purchase"}, "e11: at most 10 steps"),
    ("/analytics/funnels", {"e11": "purchase"}, "e11: at most 10 steps"),
    ("/analytics/funnels", {"e0": "signup", "e1": "purchase"}, "e0: steps are numbered from 1"),
    ("/analytics/funnels", {"e1": "signup"}, "e2: a funnel needs at least two steps"),
    ("/analytics/funnels", {"e1": "signup", "q2": "plan:pro"}, "q2: a filter needs its step's event"),
    ("/analytics/funnels", {"e1": "signup", "e2": "purchase", "q2": "plan:("}, "q2:"),
    ("/analytics/funnels", {"e1": "signup", "e2": "purchase", "breakdown": 'pl"an'}, "breakdown:"),
    ("/analytics/funnels", {"e1": "signup", "e2": "purchase", "order": "backwards"}, "order:"),
    ("/analytics/funnels", {"e1": "signup", "e2": "purchase", "from": "yesterday"}, "from:"),
    ("/analytics/funnels", {"e1": "signup", "e2": "purchase", "format": "xlsx"}, "format:"),
    ("/analytics/retention", {"start": "sign_up"}, "start: no event named 'sign_up'"),
    ("/analytics/retention", {"period": "month"}, "period:"),
    ("/analytics/retention", {"period": "day", "periods": "500"}, "periods:"),
    ("/analytics/retention", {"period": "day", "periods": "many"}, "periods: expected an integer"),
    ("/analytics/experiments", {"e1": "checkout", "e2": "purchase"}, "variant: required"),
    ("/analytics/experiments", {"variant": "checkout_flow", "e1": "checkout", "e2": "buy"}, "e2: no event named"),
    (
        "/analytics/experiments",
        {"variant": "checkout_flow", "e1": "checkout", "e2": "purchase", "control": "zzz"},
        "control:",
    ),
    ("/analytics", {"event": "sigup"}, "event: no event named 'sigup'"),
    ("/analytics", {"event": ["signup", "purchase"], "breakdown": "campaign"}, "breakdown: break down one event"),
    ("/analytics", {"event": "signup", "breakdown": "campaign", "top": "0"}, "top:"),
    ("/analytics", {"event": "signup", "breakdown": "a,b"}, "breakdown:"),
    ("/analytics", {"event": ["a", "b", "c", "d", "e", "f"]}, "event: at most 5"),
    ("/analytics", {"interval": "week"}, "interval:"),
    ("/analytics", {"q": "plan:("}, "q:"),
]


@pytest.mark.parametrize(("path", "params", "message"), BAD)
def test_bad_input_is_a_400_page_naming_the_field(
    web: httpx.Client, path: str, params: dict[str, Any], message: str
) -> None:
    r = web.get(path, params=params)
    assert r.status_code == 400, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
    assert message in html.unescape(r.text)
    if params.get("format") is None:  # the CSV of the same state: a plain-text 400, never a file
        c = web.get(path, params={**params, "format": "csv"})
        assert c.status_code == 400 and c.headers["content-type"].startswith("text/plain")
        assert message in c.text


def test_a_first_visit_shows_the_form_without_an_error(web: httpx.Client) -> None:
    for path in ("/analytics/funnels", "/analytics/retention", "/analytics/experiments"):
        r = web.get(path)
        assert r.status_code == 200 and 'role="alert"' not in r.text
        assert 'aria-current="page"' in r.text and "<form" in r.text


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(web: httpx.Client, demo_hub: LiveHub) -> None:
    t = time.time_ns() // 1000 - 3_600_000_000
    evil = ['=HYPERLINK("http://x")', "+1+2", "-3+4", "@SUM(A1)"]
    lines = []
    for i, v in enumerate(evil):
        lines.append(
            {
                "id": f"csvx-{i}-a",
                "ts": t + i,
                "kind": "event",
                "name": "csv_in",
                "user_id": f"csvx-{i}",
                "attrs": {"src": v},
            }
        )
        lines.append(
            {"id": f"csvx-{i}-b", "ts": t + i + 10, "kind": "event", "name": "csv_out", "user_id": f"csvx-{i}"}
        )
    assert demo_hub.ingest(lines).status_code == 200
    r = web.get(
        "/analytics/funnels",
        params={
            "e1": "csv_in",
            "e2": "csv_out",
            "q2": "-level:error",
            "breakdown": "src",
            "from": "-2h",
            "format": "csv",
        },
    )
    rows = _csv(r)
    assert {row["group"] for row in rows} == {"all", *("'" + v for v in evil)}
    assert {row["q"] for row in rows if row["step"] == "2"} == {"'-level:error"}
    assert all(row["users"] == "1" for row in rows if row["step"] == "2" and row["group"] != "all")


def test_permalinks_round_trip() -> None:
    for tab, qs in [
        ("funnels", "e1=signup&q1=plan%3Apro&e2=purchase&window=2d&order=any&breakdown=campaign"),
        ("experiments", "e1=checkout&e2=add_to_cart&e3=purchase&window=1d&variant=checkout_flow&control=new"),
        ("retention", "start=signup&start_q=plan%3Afree&return=login&bounded=0&periods=4&period=week"),
        ("retention", "bounded=1&period=day"),
        ("trends", "event=signup&event=purchase&unique=1&interval=day&q=plan%3Apro"),
        ("trends", "event=signup&top=3&interval=hour&breakdown=campaign"),
    ]:
        req = from_query(tab, QueryParams(qs))
        assert sorted(to_query(req)) == sorted(parse_qsl(qs)), tab
        assert from_query(tab, QueryParams(to_query(req))) == req
    # Gaps and emptied rows are dropped: e1, e3 -> two steps.
    req = from_query("funnels", QueryParams("e1=signup&e2=&q2=&e3=purchase"))
    assert req["steps"] == [{"event": "signup"}, {"event": "purchase"}]


def test_save_to_dashboard_export_import_and_open_back(
    web: httpx.Client, demo_hub: LiveHub, span: tuple[str, str]
) -> None:
    start, end = span
    params = {"e1": "checkout", "e2": "purchase", "variant": "checkout_flow", "window": "1d", "from": start, "to": end}
    page = web.get("/analytics/experiments", params=params)
    state = re.search(r'name="state" value="([^"]*)"', page.text)
    assert state
    fields = {"csrf": _csrf(page.text), "tab": "experiments", "state": html.unescape(state.group(1))}
    # No CSRF token, or another origin: refused.
    assert (
        web.post(
            "/analytics/save", data={**fields, "csrf": "", "dashboard": "AB"}, headers={"Origin": demo_hub.url}
        ).status_code
        == 403
    )
    r = web.post(
        "/analytics/save",
        data={**fields, "title": "Checkout A/B", "dashboard": "Product AB"},
        headers={"Origin": demo_hub.url},
    )
    assert r.status_code == 303 and r.headers["location"] == "/dashboards/product-ab?saved=1"
    for other, qs in [
        ("funnels", "e1=signup&e2=add_to_cart&e3=purchase&breakdown=campaign"),
        ("retention", "start=signup&return=login&period=week"),
        ("trends", "event=signup&event=purchase&interval=day"),
    ]:
        r = web.post(
            "/analytics/save",
            data={**fields, "tab": other, "state": qs, "title": other, "dashboard": "Product AB"},
            headers={"Origin": demo_hub.url},
        )
        assert r.status_code == 303, r.text
    # The dashboard over the same range shows the experiment's numbers (the same computation).
    dash = web.get("/dashboards/product-ab", params={"from": start, "to": end})
    assert dash.status_code == 200 and dash.text.count('class="panel"') == 4 and 'class="qerror"' not in dash.text
    api = _api(
        demo_hub,
        "experiment",
        {"steps": ["checkout", "purchase"], "variant": "checkout_flow", "window": "1d", "from": start, "to": end},
    )
    tables = re.findall(r'<table class="ptable">(.*?)</table>', dash.text, re.S)
    for v in api["variants"]:
        assert re.search(rf'<th scope="row">{v["value"]}</th><td class="num" data-v="{v["users"]}">', tables[0])
    # "Open in Analytics" goes back to the tab with the same state and range.
    link = html.unescape(re.findall(r'<a href="(/analytics/experiments\?[^"]+)">Open in Analytics</a>', dash.text)[0])
    assert dict(parse_qsl(urlsplit(link).query)) == params
    assert web.get(link).text.count('data-variant="new"') >= 1
    # Published, the read-only link draws the analysis panels too (no session).
    r = web.post(
        "/dashboards/product-ab/action",
        data={"csrf": _csrf(dash.text), "action": "publish"},
        headers={"Origin": demo_hub.url},
    )
    public = re.search(r"(/public/dashboards/[A-Za-z0-9_-]+)", r.text)
    assert r.status_code == 200 and public
    with httpx.Client(base_url=demo_hub.url) as anon:
        pub = anon.get(public.group(1), params={"from": "-30d"})
    assert pub.status_code == 200 and pub.text.count('class="panel"') == 4 and 'class="qerror"' not in pub.text
    assert "Open in Analytics" not in pub.text
    # Exported as JSON, imported back unchanged; a bad analysis request is refused naming its field.
    with demo_hub.client(demo_hub.read_token) as api_client:
        _export_import(api_client, start)


def _export_import(admin: httpx.Client, start: str) -> None:
    doc = admin.get("/api/v1/dashboards/product-ab").json()
    assert [p["source"] for p in doc["panels"]] == ["analytics"] * 4
    assert doc["panels"][0]["request"] == {
        "analysis": "experiment",
        "steps": [{"event": "checkout"}, {"event": "purchase"}],
        "window": "1d",
        "variant": "checkout_flow",
    }
    assert [p["request"]["analysis"] for p in doc["panels"]] == ["experiment", "funnel", "retention", "series"]
    assert doc["time"] == {"from": start, "to": ""}  # a new dashboard gets the tab's range
    doc["slug"] = "product-ab-copy"
    r = admin.post("/api/v1/dashboards", json=doc)
    assert r.status_code in (200, 201), r.text
    assert admin.get("/api/v1/dashboards/product-ab-copy").json()["panels"] == doc["panels"]
    bad = {
        **doc,
        "slug": "bad-ab",
        "panels": [{**doc["panels"][1], "request": {**doc["panels"][1]["request"], "window": "soon"}}],
    }
    r = admin.post("/api/v1/dashboards", json=bad)
    assert r.status_code == 400 and "panels[0].request.window" in r.text
    for request, field in [
        ({"analysis": "cohorts"}, "analysis"),
        ({**doc["panels"][0]["request"], "variant": ["a"]}, "variant"),
        ({**doc["panels"][2]["request"], "period": "month"}, "period"),
        ({**doc["panels"][2]["request"], "start": {"event": None, "q": "plan:("}}, "start.q"),
        ({**doc["panels"][3]["request"], "events": ["signup", "signup"]}, "events"),
        ({**doc["panels"][3]["request"], "from": "-7d"}, "from"),
    ]:
        bad["panels"] = [{**doc["panels"][1], "request": request}]
        r = admin.post("/api/v1/dashboards", json=bad)
        assert r.status_code == 400 and f"panels[0].request.{field}" in r.json()["error"], r.text

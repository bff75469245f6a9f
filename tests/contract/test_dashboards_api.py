"""Dashboards on both stores: the JSON export/import round trip of /api/v1/dashboards, bad input
named field by field, projects kept apart, and a dashboard's public link (made, replaced,
revoked, gone with its dashboard) as the store keeps it."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from obshub.errors import Conflict, NotFound
from obshub.query import dashboards
from tests.hubproc import LiveHub
from tests.web.conftest import login_client

DOC: dict[str, Any] = {
    "slug": "shop-kpis",
    "title": "Shop KPIs",
    "time": {"from": "-6h", "to": ""},
    "refresh_s": 300,
    "panels": [
        {
            "title": "p95 latency by service",
            "chart": "line",
            "source": "events",
            "request": {
                "q": "kind:log",
                "measure": "p95(duration_ms)",
                "group_by": "service",
                "top": 5,
                "interval": "auto",
            },
        },
        {"title": "Users", "chart": "bar", "source": "events", "request": {"measure": "unique(user_id)"}},
    ],
}


def test_export_import_round_trip(hub: LiveHub) -> None:
    with hub.client(hub.read_token) as c:
        r = c.post("/api/v1/dashboards", json=DOC)
        assert r.status_code == 201 and r.json() == DOC
        assert c.get("/api/v1/dashboards/shop-kpis").json() == DOC
        # The export imports back unchanged (config as code), as a replace.
        exported = c.get("/api/v1/dashboards/shop-kpis").json()
        again = c.post("/api/v1/dashboards", json=exported)
        assert again.status_code == 200 and again.json() == DOC
        # Defaults filled in: slug from the title, line chart, events, the 24 h range.
        minimal = c.post("/api/v1/dashboards", json={"title": "Night Shift!", "panels": [{"title": "n"}]})
        assert minimal.status_code == 201
        assert minimal.json() == {
            "slug": "night-shift",
            "title": "Night Shift!",
            "time": {"from": "-24h", "to": ""},
            "refresh_s": 0,
            "panels": [{"title": "n", "chart": "line", "source": "events", "request": {}}],
        }
        listed = c.get("/api/v1/dashboards").json()["dashboards"]
        assert [(d["slug"], d["panels"], d["public"]) for d in listed] == [
            ("night-shift", 1, False),
            ("shop-kpis", 2, False),
        ]
        assert c.delete("/api/v1/dashboards/night-shift").json() == {"deleted": "night-shift"}
        assert c.get("/api/v1/dashboards/night-shift").status_code == 404
        assert c.delete("/api/v1/dashboards/night-shift").status_code == 404
        assert [d["slug"] for d in c.get("/api/v1/dashboards").json()["dashboards"]] == ["shop-kpis"]


BAD: list[tuple[Any, str]] = [
    ([], "body: expected a JSON object"),
    ({}, "title: expected a non-empty string"),
    ({**DOC, "title": "  "}, "title: expected a non-empty string"),
    ({**DOC, "title": "x" * 121}, "title: at most 120 characters"),
    ({**DOC, "owner": "me"}, "owner: unknown field"),
    ({**DOC, "slug": "Shop KPIs"}, "slug: expected 1-64 lower-case letters"),
    ({**DOC, "slug": "../etc"}, "slug: expected"),
    ({"title": "!!!"}, "slug: cannot be made from this title"),
    ({**DOC, "time": "-6h"}, "time: expected"),
    ({**DOC, "time": {"from": "yesterday"}}, "time.from:"),
    ({**DOC, "time": {"from": "-1h", "to": "-2h"}}, "time.to: must be after from"),
    ({**DOC, "refresh_s": 5}, "refresh_s: expected one of 0, 30, 60, 300, 900"),
    ({**DOC, "refresh_s": True}, "refresh_s: expected one of"),
    ({**DOC, "refresh_s": None}, "refresh_s: expected one of"),
    ({**DOC, "slug": None}, "slug: expected"),
    ({**DOC, "time": {"from": "-1h", "to": None}}, "time.to: expected a string"),
    ({**DOC, "panels": {}}, "panels: expected a list"),
    ({**DOC, "panels": [{"title": "x"}] * 25}, "panels: at most 24"),
    ({**DOC, "panels": ["x"]}, "panels[0]: expected an object"),
    ({**DOC, "panels": [{"chart": "line"}]}, "panels[0].title: expected a non-empty string"),
    ({**DOC, "panels": [{"title": "a"}, {"title": "b", "chart": "pie"}]}, "panels[1].chart: expected one of line, bar"),
    ({**DOC, "panels": [{"title": "a", "source": "rollup"}]}, "panels[0].source: expected one of events"),
    ({**DOC, "panels": [{"title": "a", "colour": "red"}]}, "panels[0].colour: unknown field"),
    ({**DOC, "panels": [{"title": "a", "request": "count"}]}, "panels[0].request: expected an object"),
    ({**DOC, "panels": [{"title": "a", "request": {"from": "-1h"}}]}, "panels[0].request.from: unknown parameter"),
    ({**DOC, "panels": [{"title": "a", "request": {"measure": "median"}}]}, "panels[0].request.measure: expected"),
    ({**DOC, "panels": [{"title": "a", "request": {"q": "(a"}}]}, "panels[0].request."),
    ({**DOC, "panels": [{"title": "a", "request": {"top": 0}}]}, "panels[0].request.top: must be an integer"),
    (
        {**DOC, "time": {"from": "-30d"}, "panels": [{"title": "a", "request": {"interval": "1m"}}]},
        "panels[0].request.interval: 43201 buckets exceeds 1500",
    ),
]


def test_bad_documents_are_400_naming_the_field_and_store_nothing(hub: LiveHub) -> None:
    with hub.client(hub.read_token) as c:
        for body, message in BAD:
            r = c.post("/api/v1/dashboards", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"].startswith(message), (message, r.json())
        r = c.post("/api/v1/dashboards", content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "body: not valid JSON"
        assert c.get("/api/v1/dashboards").json() == {"dashboards": []}
        assert c.get("/api/v1/dashboards/..").status_code == 404
        assert c.get("/api/v1/dashboards/" + "a" * 200).status_code == 404


def test_projects_are_kept_apart_and_tokens_checked(hub: LiveHub) -> None:
    other = hub.new_project(f"other-{uuid.uuid4().hex[:6]}")
    with hub.client(hub.read_token) as mine, hub.client(other["read_token"]) as theirs:
        assert mine.post("/api/v1/dashboards", json=DOC).status_code == 201
        assert theirs.get("/api/v1/dashboards").json() == {"dashboards": []}
        assert theirs.get("/api/v1/dashboards/shop-kpis").status_code == 404
        assert theirs.delete("/api/v1/dashboards/shop-kpis").status_code == 404
        # The same slug in another project is another dashboard.
        assert theirs.post("/api/v1/dashboards", json={**DOC, "title": "Theirs"}).status_code == 201
        assert mine.get("/api/v1/dashboards/shop-kpis").json()["title"] == "Shop KPIs"
    with httpx.Client(base_url=hub.url) as anon:
        assert anon.get("/api/v1/dashboards").status_code == 401
        r = anon.post("/api/v1/dashboards", json=DOC, headers={"Authorization": f"Bearer {hub.ingest_token}"})
        assert r.status_code == 403


def test_public_link_made_replaced_revoked_and_gone_with_its_dashboard(hub: LiveHub) -> None:
    store, pid = hub.store, hub.project_id
    with hub.client(hub.read_token) as c:
        assert c.post("/api/v1/dashboards", json=DOC).status_code == 201
    token = dashboards.publish(store, pid, "shop-kpis")
    assert len(token) >= 32  # 24 random bytes, URL-safe base64
    found = dashboards.find_public(store, token)
    assert found is not None and found[0] == pid and found[1].slug == "shop-kpis" and found[1].public
    # Only the hash is stored: no record holds the token.
    for kind in (dashboards.KIND, dashboards.PUBLIC_KIND):
        assert all(token not in str(r.value) and token not in r.key for r in store.list_records(kind))
    with hub.client(hub.read_token) as c:
        assert c.get("/api/v1/dashboards").json()["dashboards"][0]["public"] is True
        assert "public" not in c.get("/api/v1/dashboards/shop-kpis").json()  # not part of the config
        # An import keeps the link.
        assert c.post("/api/v1/dashboards", json={**DOC, "refresh_s": 0}).status_code == 200
    assert dashboards.find_public(store, token) is not None
    with httpx.Client(base_url=hub.url) as anon:
        page = anon.get(f"/public/dashboards/{token}")
        assert page.status_code == 200 and "p95 latency by service" in page.text
    newer = dashboards.publish(store, pid, "shop-kpis")
    assert dashboards.find_public(store, token) is None and dashboards.find_public(store, newer) is not None
    assert dashboards.revoke(store, pid, "shop-kpis") is True
    assert dashboards.find_public(store, newer) is None
    assert dashboards.revoke(store, pid, "shop-kpis") is False
    again = dashboards.publish(store, pid, "shop-kpis")
    dashboards.delete_dashboard(store, pid, "shop-kpis")
    assert dashboards.find_public(store, again) is None
    assert store.list_records(dashboards.PUBLIC_KIND) == []
    with pytest.raises(NotFound):
        dashboards.publish(store, pid, "shop-kpis")
    assert dashboards.find_public(store, "x" * 32) is None


def test_panels_are_added_and_removed_in_order(hub: LiveHub) -> None:
    store, pid = hub.store, hub.project_id
    d = dashboards.add_panel(store, pid, "Ops Board", {"title": "one", "request": {"measure": "count"}})
    assert d.slug == "ops-board" and [p.title for p in d.panels] == ["one"]
    d = dashboards.add_panel(store, pid, "ops board", {"title": "two", "chart": "bar", "request": {"top": "3"}})
    assert d.title == "Ops Board" and [p.title for p in d.panels] == ["one", "two"]
    assert d.panels[1].request == {"top": 3}  # a form's "3" stored as the number
    d = dashboards.remove_panel(store, pid, "ops-board", 0)
    assert [p.title for p in d.panels] == ["two"]
    with pytest.raises(NotFound):
        dashboards.remove_panel(store, pid, "ops-board", 5)


def test_at_most_max_dashboards_per_project(sqlite_hub: LiveHub) -> None:
    store, pid = sqlite_hub.store, sqlite_hub.project_id
    for i in range(dashboards.MAX_DASHBOARDS):
        dashboards.put_dashboard(store, pid, {"title": f"d{i}"})
    with sqlite_hub.client(sqlite_hub.read_token) as c:
        r = c.post("/api/v1/dashboards", json={"title": "one too many"})
        assert r.status_code == 409 and "200 dashboards" in r.json()["error"]
        assert c.post("/api/v1/dashboards", json={"title": "d7", "refresh_s": 60}).status_code == 200  # a replace
    with pytest.raises(Conflict):
        dashboards.add_panel(store, pid, "another", {"title": "x"})
    # Saving a panel to a new dashboard from the web: the same refusal, as a page.
    with login_client(sqlite_hub) as web:
        form = web.get("/visualize").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        r = web.post(
            "/visualize/save",
            data={"csrf": csrf.group(1), "dashboard": "another", "measure": "count"},
            headers={"Origin": sqlite_hub.url},
        )
        assert r.status_code == 409 and "200 dashboards" in r.text and r.headers["content-type"].startswith("text/html")

"""Dashboard panels with `"source": "metric"` on both stores (docs/web.md, "Dashboards"): a
defined metric's stored hourly or daily rollup series (its total, one group, or every group),
the numbers in the page's table equal to GET /api/v1/metrics/<name>/series; the definition
round-trips through the dashboards API; bad requests are 400s naming the field; an unknown
metric is the panel's error, not the page's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obshub.events import format_ts, now_us
from obshub.jobs.rollups import RollupJob
from tests.factories import event
from tests.hubproc import LiveHub
from tests.web.conftest import login_client
from tests.web.test_dashboards_pages import _table

HOUR = 3_600_000_000
CONFIG = """
[[metrics]]
name = "signups"
project = "test"
query = "name:signup"
group_by = "plan"
"""
DOC: dict[str, Any] = {
    "slug": "kpis",
    "title": "KPIs",
    "time": {"from": "-6h", "to": ""},
    "refresh_s": 0,
    "panels": [
        {"title": "Signups", "chart": "line", "source": "metric", "request": {"metric": "signups", "interval": "hour"}},
        {
            "title": "Signups by plan",
            "chart": "bar",
            "source": "metric",
            "request": {"metric": "signups", "interval": "hour", "group": "*"},
        },
        {
            "title": "Pro",
            "chart": "line",
            "source": "metric",
            "request": {"metric": "signups", "interval": "hour", "group": "pro"},
        },
        {"title": "Ghost", "chart": "line", "source": "metric", "request": {"metric": "nope", "interval": "day"}},
    ],
}


@pytest.fixture
def khub(store_url: str, tmp_path: Path) -> Iterator[LiveHub]:
    path = tmp_path / "obshub.toml"
    path.write_text(CONFIG)
    h = LiveHub(store_url, config=path).start()
    yield h
    h.stop()


def test_metric_panels_show_the_stored_series(khub: LiveHub) -> None:
    h = khub
    now = now_us()
    hour = now - now % HOUR
    # Two hours of signups: 3 free + 2 pro in the previous hour, 1 pro in this one.
    plans = [(hour - HOUR + 60_000_000 * i, p) for i, p in enumerate(["free"] * 3 + ["pro"] * 2)]
    plans.append((hour + (now - hour) // 2, "pro"))
    r = h.ingest([event(kind="event", name="signup", ts=t, attrs={"plan": p}) for t, p in plans])
    assert r.status_code == 200 and r.json()["accepted"] == 6, r.text
    hub = h.app.state.hub
    RollupJob(hub.settings, hub.store, hub.telemetry).run(now=now)

    with h.client(h.read_token) as c:
        r = c.post(
            "/api/v1/dashboards", json={**DOC, "panels": [{**DOC["panels"][0], "request": {"metric": "signups"}}]}
        )
        assert r.status_code == 201 and r.json()["panels"][0]["request"] == {"metric": "signups", "interval": "hour"}
        r = c.post("/api/v1/dashboards", json=DOC)
        assert r.status_code == 200 and r.json() == DOC  # the export imports back unchanged
    start, end = format_ts(hour - 2 * HOUR), format_ts(now)
    api = h.get("/api/v1/metrics/signups/series", interval="hour", **{"from": start, "to": end}).json()

    with login_client(h) as web:
        page = web.get("/dashboards/kpis", params={"from": start, "to": end})
    assert page.status_code == 200, page.text
    total = {p["t"]: p["value"] for p in api["total"]}
    assert {t: v for t, v in total.items() if v} == {format_ts(hour - HOUR): 5, format_ts(hour): 1}
    rows = _table(page.text, 0)
    assert [r[0] for r in rows] == [format_ts(hour - 2 * HOUR + i * HOUR) for i in range(3)]
    assert {r[0]: float(r[1]) for r in rows} == {r[0]: float(total.get(r[0], 0)) for r in rows}
    # Every group over the hours, one column each (the table by time: free, pro).
    groups = {g["group"]: {p["t"]: p["value"] for p in g["series"]} for g in api["groups"]}
    by_plan = _table(page.text, 1)
    assert by_plan[1][0] == format_ts(hour - HOUR) and sorted(map(float, by_plan[1][1:])) == [2.0, 3.0]
    assert groups["pro"] == {format_ts(hour - HOUR): 2, format_ts(hour): 1}
    pro = _table(page.text, 2)
    assert [float(r[1]) for r in pro] == [0.0, 2.0, 1.0]
    assert "no metric named &#39;nope&#39;" in page.text or "no metric named 'nope'" in page.text
    assert page.text.count('<table class="ptable">') == 3


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"q": "name:signup"}, "panels[0].request.q: unknown parameter"),
        ({}, "panels[0].request.metric: expected a metric's name"),
        ({"metric": "a b"}, "panels[0].request.metric: expected a metric's name"),
        ({"metric": "signups", "interval": "week"}, "panels[0].request.interval: expected hour or day"),
        ({"metric": "signups", "interval": {}}, "panels[0].request.interval: expected hour or day"),
        ({"metric": "signups", "group": 5}, "panels[0].request.group: expected"),
    ],
)
def test_bad_metric_panels_are_400s(khub: LiveHub, request_: dict[str, Any], error: str) -> None:
    body = {"title": "x", "panels": [{"title": "p", "source": "metric", "request": request_}]}
    with khub.client(khub.read_token) as c:
        r = c.post("/api/v1/dashboards", json=body)
    assert r.status_code == 400 and r.json()["error"].startswith(error), r.text

"""`/api/v1/metrics` on both stores (docs/api.md, "Metrics"): config-file and API metrics,
their hourly series as JSON and CSV after a rollup run, the `obshub_metric_value` gauges on
/metrics (clean for `promtool check metrics`), deletion, and 400s naming the field."""

from __future__ import annotations

import csv
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from obshub.errors import ConfigError
from obshub.events import format_ts
from obshub.jobs.rollups import RollupJob
from obshub.query.metrics import config_metrics
from obshub.settings import load_settings
from obshub.store import open_store
from tests.factories import event, now_us
from tests.hubproc import LiveHub

PROMTOOL = "/usr/bin/promtool"
CONFIG = """
[[metrics]]
name = "errors"
project = "test"
query = "level:error"
description = "Error events"
"""


@pytest.fixture
def mhub(store_url: str, tmp_path: Path) -> Iterator[LiveHub]:
    path = tmp_path / "obshub.toml"
    path.write_text(CONFIG)
    h = LiveHub(store_url, config=path).start()
    yield h
    h.stop()


def _post(h: LiveHub, body: Any, token: str | None = None) -> httpx.Response:
    with h.client(token or h.read_token) as c:
        return c.post("/api/v1/metrics", json=body)


def _delete(h: LiveHub, name: str) -> httpx.Response:
    with h.client(h.read_token) as c:
        return c.delete(f"/api/v1/metrics/{name}")


def _run(h: LiveHub) -> dict[str, int]:
    hub = h.app.state.hub
    return RollupJob(hub.settings, hub.store, hub.telemetry).run()


def test_define_compute_read_and_delete(mhub: LiveHub) -> None:
    h = mhub
    body = {"name": "signups", "query": "name:signup", "group_by": "plan", "unit": "signups", "description": "New"}
    r = _post(h, body)
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "api" and r.json()["group_by"] == "attrs.plan" and r.json()["current"]["1h"] is None
    assert _post(h, body).status_code == 200  # replaced
    r = _post(h, {"name": "errors", "query": "level:warning"})
    assert r.status_code == 409 and "config file" in r.json()["error"]
    names = {m["name"]: m["source"] for m in h.get("/api/v1/metrics").json()["metrics"]}
    assert names == {"errors": "config", "signups": "api"}

    t = now_us()
    plans = ["free"] * 3 + ["pro"] * 2 + ["=cmd"]
    evs = [event(kind="event", name="signup", ts=t - 1000 * i, attrs={"plan": p}) for i, p in enumerate(plans)]
    evs += [event(level="error", ts=t - 5000), event(kind="event", name="login", ts=t)]
    assert h.ingest(evs).json()["accepted"] == 8
    out = _run(h)
    assert out["metrics"] == 2 and out["failed"] == 0

    listed = {m["name"]: m for m in h.get("/api/v1/metrics").json()["metrics"]}
    assert listed["signups"]["current"] == {"1h": 6, "1d": 6}
    assert listed["errors"]["current"] == {"1h": 1, "1d": 1}
    assert listed["signups"]["rollup"]["backfilled"] is True and listed["signups"]["rollup"]["computed_at"]

    s = h.get("/api/v1/metrics/signups/series", interval="hour").json()
    assert s["metric"] == "signups" and s["interval"] == "hour" and s["unit"] == "signups"
    hour = t - t % 3_600_000_000
    (point,) = [p for p in s["total"] if p["count"]]
    assert point["count"] == 6 and point["value"] == 6
    assert {g["group"]: g["series"][-1]["value"] for g in s["groups"]} == {"free": 3, "pro": 2, "=cmd": 1}
    only = h.get("/api/v1/metrics/signups/series", interval="day", group="pro").json()
    assert [g["group"] for g in only["groups"]] == ["pro"] and only["total"] == []
    day = h.get("/api/v1/metrics/signups/series", interval="day").json()
    assert day["total"][-1]["value"] == 6

    r = h.get("/api/v1/metrics/signups/series", format="csv", **{"from": "-2h"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["row", "group", "t", "count", "value"]
    at = format_ts(hour)
    assert ["total", "", at, "6", "6"] in rows
    assert [x for x in rows if x[0] == "group"] == [
        ["group", "'=cmd", at, "1", "1"],  # a spreadsheet takes no formula from a group's name
        ["group", "free", at, "3", "3"],
        ["group", "pro", at, "2", "2"],
    ]

    text = httpx.get(f"{h.url}/metrics").text
    assert 'obshub_metric_value{group="",metric="signups",project="test",window="1h"} 6.0' in text
    assert 'obshub_metric_value{group="pro",metric="signups",project="test",window="1d"} 2.0' in text
    assert 'obshub_metric_value{group="",metric="errors",project="test",window="1d"} 1.0' in text
    if os.path.exists(PROMTOOL):
        r2 = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert r2.returncode == 0 and not r2.stdout.strip() and not r2.stderr.strip(), r2.stdout + r2.stderr

    assert _delete(h, "signups").json() == {"deleted": "signups"}
    assert _delete(h, "signups").status_code == 404
    assert _delete(h, "errors").status_code == 409  # config-file metrics are changed there
    assert h.get("/api/v1/metrics/signups/series").status_code == 404
    assert h.store.rollup_series(h.project_id, "signups", "hour", 0, 2**62) == []
    _run(h)
    text = httpx.get(f"{h.url}/metrics").text
    assert 'metric="signups"' not in text and 'metric="errors"' in text
    h.app.state.hub.jobs_lease.release()  # this hub loses the jobs' lease: nobody here refreshes them
    text = httpx.get(f"{h.url}/metrics").text
    assert "# TYPE obshub_metric_value gauge" in text and "obshub_metric_value{" not in text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"query": "x"}, "name"),
        ({"name": "bad name"}, "name"),
        ({"name": "m", "measure": "median(x)"}, "measure"),
        ({"name": "m", "measure": "sum(service)"}, "measure"),
        ({"name": "m", "measure": 3}, "measure"),
        ({"name": "m", "group_by": ["plan"]}, "group_by"),
        ({"name": "m", "group_by": "plan,route"}, "group_by"),
        ({"name": "m", "group_by": "message"}, "group_by"),
        ({"name": "m", "query": "level:(("}, "query"),
        ({"name": "m", "query": 5}, "query"),
        ({"name": "m", "max_groups": 0}, "max_groups"),
        ({"name": "m", "max_groups": True}, "max_groups"),
        ({"name": "m", "unit": "x" * 40}, "unit"),
        ({"name": "m", "project": "elsewhere"}, "project"),
        ({"name": "m", "interval": "hour"}, "interval"),
    ],
)
def test_bad_definitions_are_400s_naming_the_field(sqlite_hub: LiveHub, body: Any, field: str) -> None:
    r = _post(sqlite_hub, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(f"{field}: "), r.json()


def test_bad_series_parameters_are_400s(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    assert _post(h, {"name": "m"}).status_code == 201
    for params, field in (
        ({"interval": "minute"}, "interval"),
        ({"from": "-100d"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"to": "-48h"}, "to"),
        ({"format": "xml"}, "format"),
        ({"group": "x" * 300}, "group"),
        ({"step": "1"}, "step"),
    ):
        r = h.get("/api/v1/metrics/m/series", **params)
        assert r.status_code == 400 and r.json()["error"].startswith(f"{field}: "), (params, r.text)
    assert h.get("/api/v1/metrics/nope/series").status_code == 404
    assert h.get("/api/v1/metrics/m/series", interval="day", **{"from": "-1000d"}).status_code == 200
    with h.client(h.read_token) as c:
        assert c.post("/api/v1/metrics", content=b"{").status_code == 400
    assert _post(h, {"name": "m"}, token=h.ingest_token).status_code == 403


def test_config_tables_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[\[metrics\]\] #2 \('b'\): measure: "):
        config_metrics([{"name": "a"}, {"name": "b", "measure": "avg"}])
    with pytest.raises(ConfigError, match=r"\[\[metrics\]\] #2 \('a'\): name: 'a' is declared twice"):
        config_metrics([{"name": "a"}, {"name": "a"}])
    with pytest.raises(ConfigError, match=r"\[\[metrics\]\] #1: name: required"):
        config_metrics([{"query": "x"}])
    path = tmp_path / "obshub.toml"
    path.write_text('rollup_recompute_hours = 3\n[[metrics]]\nname = "a"\ngroup_by = "plan"\nmax_groups = 5\n')
    s = load_settings({"OBSHUB_CONFIG": str(path)})
    assert s.rollup_recompute_hours == 3 and config_metrics(s.metrics)[0].max_groups == 5
    with pytest.raises(ConfigError, match="OBSHUB_ROLLUP_INTERVAL_S"):
        load_settings({"OBSHUB_ROLLUP_INTERVAL_S": "1"})
    with pytest.raises(ConfigError, match="OBSHUB_ROLLUP_RECOMPUTE_HOURS"):
        load_settings({"OBSHUB_ROLLUP_RECOMPUTE_HOURS": "1000"})
    path.write_text('[[metrics]]\nname = "a"\nmeasure = "p95"\n')
    with pytest.raises(ConfigError, match=r"#1 \('a'\): measure: p95 needs a numeric field"):
        RollupJob(load_settings({"OBSHUB_CONFIG": str(path)}), open_store(f"sqlite:///{tmp_path}/x.db"))  # start_jobs

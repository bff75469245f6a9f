"""Prometheus as a metric source (docs/metrics.md#prometheus-as-a-source), against the real
Debian Prometheus (scripts/prometheus.sh) scraping a live hub every second: PromQL metrics
defined over the API land in the rollups by the rollup job (run directly with the real clock,
since Prometheus holds real-time samples), grouped by a label, recomputed without duplicates,
backfilled over a bounded number of days; a bad expression, several series without group_by and
an unreachable server are recorded as `last_error` in GET /api/v1/metrics, never a crash; the
definitions' 400s name the field and a definition cannot carry a URL (SSRF)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obshub.errors import ConfigError
from obshub.events import now_us
from obshub.jobs.rollups import PROMETHEUS_BACKFILL_DAYS, RollupJob
from obshub.settings import Settings, load_settings
from obshub.store.base import ROLLUP_INTERVALS
from tests.ci import unavailable
from tests.factories import event
from tests.hubproc import LiveHub, free_port, wait_until
from tests.promproc import PROMETHEUS, Prometheus

HOUR = ROLLUP_INTERVALS["hour"]
DAY = ROLLUP_INTERVALS["day"]
NATIVE = 'job="obshub-hub",protocol="native"'
ACCEPTED = f'obshub_ingest_events_total{{{NATIVE},outcome="accepted"}}'
METRICS: list[dict[str, Any]] = [
    # The events the hub accepted over the bucket ($__range: the bucket's length).
    {"name": "ingested", "datasource": "prometheus", "promql": f"sum(increase({ACCEPTED}[$__range]))"},
    # Averaged over the bucket (no $__range): the hub was up at every sample.
    {"name": "hub_up", "datasource": "prometheus", "promql": 'max(up{job="obshub-hub"})', "unit": "ratio"},
    {
        "name": "by_outcome",
        "datasource": "prometheus",
        "promql": f"sum by (outcome) (increase(obshub_ingest_events_total{{{NATIVE}}}[$__range]))",
        "group_by": "outcome",
    },
    {"name": "broken", "datasource": "prometheus", "promql": "sum(rate(obshub_ingest_events_total[5m])"},
    {"name": "two_series", "datasource": "prometheus", "promql": "up"},  # the hub and Prometheus itself
    {"name": "errors", "query": "level:error"},  # an event metric beside them
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveHub, Prometheus]]:
    if not os.access(PROMETHEUS, os.X_OK):
        unavailable(f"{PROMETHEUS} not installed (scripts/prometheus.sh installs Debian's prometheus)")
    tmp = tmp_path_factory.mktemp("promsource")
    h = LiveHub(f"sqlite:///{tmp}/hub.db").start()
    prom = None
    try:
        prom = Prometheus(tmp, {"obshub-hub": f"127.0.0.1:{h.port}"}, []).start()
        wait_until(lambda: len(prom.query('up{job="obshub-hub"} == 1')) == 1, 30, "the first scrape of the hub")
        # Two batches a few scrapes apart: the counter moves between samples, so increase() sees it.
        assert h.ingest([event(level="error") for _ in range(10)] + [{"message": "x", "level": "loud"}]).status_code
        wait_until(lambda: len(prom.query(f"{ACCEPTED} == 10")) == 1, 30, "the first batch scraped")
        assert h.ingest([event() for _ in range(40)]).status_code == 200
        wait_until(lambda: len(prom.query(f"{ACCEPTED} == 50")) == 1, 30, "the second batch scraped")
        wait_until(lambda: len(prom.query(f"count_over_time(({ACCEPTED} == 50)[1m:1s]) >= 3")) >= 1, 30, "3 scrapes")
        yield h, prom
    finally:
        if prom is not None:
            prom.stop()
        h.stop()


def _job(h: LiveHub, url: str) -> RollupJob:
    hub = h.app.state.hub
    return RollupJob(dataclasses.replace(hub.settings, prometheus_url=url), hub.store, hub.telemetry)


def _listed(h: LiveHub) -> dict[str, dict[str, Any]]:
    r = h.get("/api/v1/metrics")
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["metrics"]}


def test_promql_metrics_fill_the_rollups(live: tuple[LiveHub, Prometheus]) -> None:
    h, prom = live
    with h.client(h.read_token) as c:
        for body in METRICS:
            r = c.post("/api/v1/metrics", json=body)
            assert r.status_code == 201, r.text
    assert r.json()["datasource"] == "events"
    now = now_us()
    out = _job(h, prom.url).run(now=now)
    assert out["failed"] == 2 and out["metrics"] == 4, out  # broken and two_series: recorded, not raised

    listed = _listed(h)
    assert listed["ingested"]["datasource"] == "prometheus" and listed["ingested"]["promql"].startswith("sum(")
    assert listed["ingested"]["rollup"]["last_error"] is None and listed["ingested"]["rollup"]["backfilled"]
    assert "parse error" in listed["broken"]["rollup"]["last_error"]
    assert "2 series" in listed["two_series"]["rollup"]["last_error"]
    assert listed["errors"]["current"]["1d"] == 10  # the event metric is unaffected
    # The day so far holds both batches (the counter was 0 before): increase() extrapolates
    # to the range's ends by up to half a scrape interval each, on a series of a few seconds.
    day = listed["ingested"]["current"]["1d"]
    assert 45 <= day <= 75, day
    assert listed["hub_up"]["current"]["1d"] == 1.0 and listed["hub_up"]["current"]["1h"] == 1.0

    r = h.get("/api/v1/metrics/by_outcome/series", interval="day", **{"from": "-1d"})
    assert r.status_code == 200, r.text
    groups = {g["group"]: g["series"][-1]["value"] for g in r.json()["groups"]}
    assert set(groups) == {"accepted", "rejected", "duplicate"}, groups
    assert 45 <= groups["accepted"] <= 75 and 0.9 <= groups["rejected"] <= 2 and groups["duplicate"] == 0, groups
    assert r.json()["total"][-1]["count"] == 3 and r.json()["total"][-1]["value"] is None

    # Backfilled from PROMETHEUS_BACKFILL_DAYS back (empty days: count 0, no value), not further.
    r = h.get("/api/v1/metrics/hub_up/series", interval="day", **{"from": "-30d"})
    days = r.json()["total"]
    assert len(days) == PROMETHEUS_BACKFILL_DAYS + 1 and days[0]["value"] is None and days[0]["count"] == 0

    # Again: the buckets are replaced, not added to; a fixed expression clears its last_error.
    hours = h.get("/api/v1/metrics/ingested/series", interval="hour", **{"from": "-3d"}).json()["total"]
    with h.client(h.read_token) as c:
        r = c.post("/api/v1/metrics", json={**METRICS[3], "promql": "sum(rate(obshub_ingest_events_total[5m]))"})
        assert r.status_code == 200, r.text
    assert _job(h, prom.url).run(now=now_us())["failed"] == 1
    again = h.get("/api/v1/metrics/ingested/series", interval="hour", **{"from": "-3d"}).json()["total"]
    assert [p["t"] for p in again] == [p["t"] for p in hours]
    assert 45 <= _listed(h)["ingested"]["current"]["1d"] <= 75
    assert _listed(h)["broken"]["rollup"]["last_error"] is None


def test_prometheus_down_is_an_error_not_a_crash(live: tuple[LiveHub, Prometheus]) -> None:
    h, _ = live
    with h.client(h.read_token) as c:
        r = c.post("/api/v1/metrics", json={"name": "nowhere", "datasource": "prometheus", "promql": "vector(1)"})
        assert r.status_code in (200, 201), r.text
    out = _job(h, f"http://127.0.0.1:{free_port()}").run()
    assert out["metrics"] >= 1  # the event metrics went on
    assert "unreachable" in _listed(h)["nowhere"]["rollup"]["last_error"]
    _job(h, "").run()  # an API metric on a hub without the setting: said, not a crash
    assert "prometheus_url" in _listed(h)["nowhere"]["rollup"]["last_error"]


def test_definitions_are_checked_and_carry_no_url(tmp_path: Path) -> None:
    h = LiveHub(f"sqlite:///{tmp_path}/hub.db").start()
    try:
        bad = [
            ({"name": "a", "datasource": "prometheus"}, "promql"),
            ({"name": "a", "datasource": "prometheus", "promql": ""}, "promql"),
            ({"name": "a", "datasource": "prometheus", "promql": "up", "query": "x"}, "query"),
            ({"name": "a", "datasource": "prometheus", "promql": "up", "measure": "count"}, "measure"),
            ({"name": "a", "datasource": "prometheus", "promql": "up", "group_by": "attrs.x"}, "group_by"),
            ({"name": "a", "datasource": "prometheus", "promql": "x" * 5000}, "promql"),
            ({"name": "a", "datasource": "graphite"}, "datasource"),
            ({"name": "a", "promql": "up"}, "promql"),  # events metrics have no promql
            (
                {"name": "a", "datasource": "prometheus", "promql": "up", "prometheus_url": "http://10.0.0.1"},
                "prometheus_url",
            ),
        ]
        with h.client(h.read_token) as c:
            for body, field in bad:
                r = c.post("/api/v1/metrics", json=body)
                assert r.status_code == 400 and field in r.json()["error"], (body, r.text)
    finally:
        h.stop()
    with pytest.raises(ConfigError, match="prometheus_url"):
        load_settings({"OBSHUB_PROMETHEUS_URL": "ftp://prom:9090"})
    table = {"name": "p95", "project": "test", "datasource": "prometheus", "promql": "vector(1)"}
    with pytest.raises(ConfigError, match="prometheus_url"):
        RollupJob(Settings(metrics=(table,)), store=None)  # type: ignore[arg-type]

"""The rollup job (docs/metrics.md): every `rollup_interval_s` (5 min), on the hub holding the
jobs' lease, the hourly and daily values of every defined metric (obshub/query/metrics.py) are
computed from the raw events into the store's rollups, which have their own retention
(`rollup_retention_days`, 400), so KPIs outlive the events (`retention_days`, 30).

Each run, per metric:
1. the last `rollup_recompute_hours` hours (6) up to the current one, the days they touch and
   the previous day are computed again: events arriving late (an agent's spool, a client's
   clock) change their buckets' values, exactly, because a bucket's rows are replaced, never
   added to (`Store.put_rollups`);
2. a new definition (or a changed one: its values are dropped first) is backfilled from its
   oldest stored event, a day at a time, oldest first, with one log line per day ("rollup
   backfill metric=... done=... of=..."); its progress is a store record (`done_to`), written
   after each day's rows, so a hub restarted mid-backfill (or another hub taking the lease over)
   goes on from the last day done, and a day written twice (killed between the rows and the
   record) is replaced, not double counted. A run spends at most RUN_BUDGET_S on backfills; the
   rest is left to the next runs.
Then rollups older than the retention are deleted and the `obshub_metric_value` gauges (the
current hour and day per metric and group) are refreshed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx
import structlog

from obshub.errors import ConfigError, StoreError
from obshub.events import now_us
from obshub.jobs.prometheus import TIMEOUT_S, PrometheusError, compute_prometheus
from obshub.query.metrics import (
    FOREVER,
    STATE_KIND,
    MetricDef,
    compute,
    config_metrics,
    project_metrics,
)
from obshub.settings import Settings
from obshub.store.base import ROLLUP_INTERVALS, Project, RollupRow, SearchRequest, Store
from obshub.telemetry import Telemetry

__all__ = ["PROMETHEUS_BACKFILL_DAYS", "RUN_BUDGET_S", "RollupJob"]

log = structlog.get_logger("obshub.jobs")

HOUR = ROLLUP_INTERVALS["hour"]
DAY = ROLLUP_INTERVALS["day"]
RUN_BUDGET_S = 60.0  # backfill time per run: a day costs 25 aggregations (~0.1-1 s)
# A new Prometheus metric is backfilled from this many days back (Prometheus keeps 15 days by
# default; older buckets would only be empty): 8 days x 25 queries.
PROMETHEUS_BACKFILL_DAYS = 7


class RollupJob:
    """One hub's rollup job. Built at start: a bad `[[metrics]]` table is a ConfigError then."""

    def __init__(self, settings: Settings, store: Store, telemetry: Telemetry | None = None) -> None:
        self.settings = settings
        self.store = store
        self.telemetry = telemetry
        self.config = config_metrics(settings.metrics)
        if not settings.prometheus_url and any(m.datasource == "prometheus" for m in self.config):
            raise ConfigError(
                'OBSHUB_CONFIG: a [[metrics]] table has datasource = "prometheus" but prometheus_url is not set'
            )
        self._prometheus: httpx.Client | None = None
        self._now = 0

    def _compute(self, project: Project, m: MetricDef, interval: str, t: int) -> list[RollupRow]:
        if m.datasource == "events":
            return compute(self.store, project.id, m, interval, t)
        if self._prometheus is None:  # one connection pool per run, closed at its end
            self._prometheus = httpx.Client(timeout=TIMEOUT_S)
        return compute_prometheus(self._prometheus, self.settings.prometheus_url, m, interval, t, self._now)

    def run(self, now: int | None = None, max_days: int | None = None) -> dict[str, int]:
        """One pass over every project's metrics. `max_days`: backfill at most this many days
        per metric (tests stop a backfill midway with it). Returns counts for the log."""
        try:
            return self._run(now_us() if now is None else now, max_days)
        finally:
            if self._prometheus is not None:
                self._prometheus.close()
                self._prometheus = None

    def _run(self, now: int, max_days: int | None) -> dict[str, int]:
        self._now = now
        deadline = time.monotonic() + RUN_BUDGET_S
        out = {"metrics": 0, "buckets": 0, "failed": 0, "expired": 0}
        samples: dict[tuple[str, str, str, str], float] = {}
        try:
            projects = self.store.list_projects()
        except StoreError as e:
            log.warning("rollups failed; will retry", error=str(e))
            return out
        for project in projects:
            try:
                metrics = project_metrics(self.store, project, self.config)
                self._forget_removed(project, metrics)
            except StoreError as e:
                log.warning("rollups failed; will retry", project=project.name, error=str(e))
                out["failed"] += 1
                continue
            for m in metrics:
                try:
                    out["buckets"] += self._metric(project, m, now, deadline, max_days)
                    self._current(project, m, now, samples)
                    out["metrics"] += 1
                except StoreError as e:
                    log.warning("rollup failed; will retry", project=project.name, metric=m.name, error=str(e))
                    out["failed"] += 1
                except PrometheusError as e:  # the server down, a bad expression: shown in GET /api/v1/metrics
                    log.warning("rollup failed; will retry", project=project.name, metric=m.name, error=str(e))
                    out["failed"] += 1
                    self._failed(project, m, str(e))
        if self.settings.rollup_retention_days > 0:
            try:
                out["expired"] = self.store.delete_rollups(now - self.settings.rollup_retention_days * DAY)
            except StoreError as e:
                log.warning("rollup retention failed; will retry", error=str(e))
        if self.telemetry is not None:
            self.telemetry.metric_values.replace(samples)
        return out

    def _failed(self, project: Project, m: MetricDef, error: str) -> None:
        try:
            rec = self.store.get_record(STATE_KIND, m.key(project.id))
            if rec is not None and rec.value.get("fingerprint") == m.fingerprint:
                self.store.put_record(STATE_KIND, rec.key, {**rec.value, "last_error": error})
        except StoreError as e:
            log.warning("rollup error not recorded", project=project.name, metric=m.name, error=str(e))

    def _forget_removed(self, project: Project, metrics: Sequence[MetricDef]) -> None:
        """A metric gone from the config file (API deletes clean up themselves) loses its rows."""
        names = {m.name for m in metrics}
        for rec in self.store.list_records(STATE_KIND, f"{project.id}:"):
            name = rec.key.split(":", 1)[1]
            if name not in names:
                self.store.delete_rollups(FOREVER, project.id, name)
                self.store.delete_record(STATE_KIND, rec.key)
                log.info("rollups of a removed metric deleted", project=project.name, metric=name)

    def _state(self, project: Project, m: MetricDef, now: int) -> dict[str, Any]:
        rec = self.store.get_record(STATE_KIND, m.key(project.id))
        if rec is not None and rec.value.get("fingerprint") == m.fingerprint:
            return dict(rec.value)
        # New, or its values depend on something that changed: start again from the oldest event.
        self.store.delete_rollups(FOREVER, project.id, m.name)
        if m.datasource == "prometheus":
            oldest = [{"ts": now - PROMETHEUS_BACKFILL_DAYS * DAY}]
        else:
            oldest = self.store.search(project.id, SearchRequest(query=m.node, limit=1, ascending=True))
        first = int(oldest[0]["ts"]) if oldest else now
        first -= first % DAY
        st: dict[str, Any] = {"fingerprint": m.fingerprint, "from": first, "done_to": first, "computed_at": 0}
        self.store.put_record(STATE_KIND, m.key(project.id), st)
        if oldest:
            log.info("rollup backfill starts", project=project.name, metric=m.name, days=(now - first) // DAY + 1)
        return st

    def _hours(self, project: Project, m: MetricDef, start: int, end: int) -> int:
        """Hours [start, end) within one day, and that day: their rows replaced."""
        rows: list[RollupRow] = []
        for t in range(start, end, HOUR):
            rows += self._compute(project, m, "hour", t)
        self.store.put_rollups(project.id, m.name, "hour", start, end, rows)
        self._day(project, m, start - start % DAY)
        return (end - start) // HOUR + 1

    def _day(self, project: Project, m: MetricDef, d: int) -> None:
        self.store.put_rollups(project.id, m.name, "day", d, d + DAY, self._compute(project, m, "day", d))

    def _metric(self, project: Project, m: MetricDef, now: int, deadline: float, max_days: int | None) -> int:
        st = self._state(project, m, now)
        key = m.key(project.id)
        target = now - now % HOUR + HOUR  # the current hour included
        recent = now - self.settings.rollup_recompute_hours * HOUR
        recent -= recent % HOUR
        buckets = 0
        # 1. The recompute window (late events), day by day; then the previous day's value.
        cursor = max(recent, int(st["from"]))
        days = set()
        while cursor < target:
            end = min(cursor - cursor % DAY + DAY, target)
            buckets += self._hours(project, m, cursor, end)
            days.add(cursor - cursor % DAY)
            cursor = end
        yesterday = now - now % DAY - DAY
        if yesterday not in days and yesterday >= st["from"]:
            self._day(project, m, yesterday)
            buckets += 1
        # 2. The backfill, oldest day first, its progress recorded after each day.
        done_to = int(st["done_to"])
        total = (recent - int(st["from"]) + DAY - 1) // DAY
        n = 0
        while done_to < recent:
            if (max_days is not None and n >= max_days) or time.monotonic() > deadline:
                break
            end = min(done_to - done_to % DAY + DAY, recent)
            buckets += self._hours(project, m, done_to, end)
            done_to = end
            n += 1
            st["done_to"] = done_to
            self.store.put_record(STATE_KIND, key, st)
            done = (done_to - int(st["from"]) + DAY - 1) // DAY
            log.info(f"rollup backfill metric={m.name} done={done} of {total}", project=project.name)
        if done_to >= recent:
            st["done_to"] = target
        st["computed_at"] = now
        st.pop("last_error", None)
        self.store.put_record(STATE_KIND, key, st)
        return buckets

    def _current(
        self, project: Project, m: MetricDef, now: int, samples: dict[tuple[str, str, str, str], float]
    ) -> None:
        """The gauges of the current hour and day, one per row (bounded: max_groups + 2 each)."""
        for window, interval in (("1h", "hour"), ("1d", "day")):
            step = ROLLUP_INTERVALS[interval]
            t = now - now % step
            for r in self.store.rollup_series(project.id, m.name, interval, t, t + step):
                if r.value is not None:
                    samples[(project.name, m.name, window, r.group)] = float(r.value)

"""What the Checks page and the public status pages show (obshub/web/pages_checks.py): per check
its status (queries.check_status), a 90-day bar (a cell per UTC day: the share of probes that
passed, or no data), the response time of the last 24 h and its last failures.

Bounded at any scale: the bars and the chart are two `Store.check_series` reads for every
check shown (aggregated in the store, at most `PAGE_SIZE` checks a page), not a read per check
and day; the failures one search of at most `FAILURES` results per check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from obshub.events import format_ts
from obshub.store.base import CheckBucket, Project, SearchRequest, Store
from obshub.store.querylang import And, Field
from obshub.uptime.model import Check
from obshub.uptime.queries import check_status, project_checks, results_query

__all__ = ["BAR_DAYS", "CHART_BUCKET_US", "FAILURES", "PAGE_SIZE", "Day", "checks_page", "status_page"]

DAY_US = 86_400_000_000
BAR_DAYS = 90
CHART_BUCKET_US = 15 * 60_000_000  # the 24 h response time chart: 96 points
FAILURES = 5  # last failures listed per check
PAGE_SIZE = 50  # checks per page: 7 small reads each (check_status) + the two series


@dataclass(frozen=True)
class Day:
    """One cell of the 90-day bar."""

    date: str  # YYYY-MM-DD (UTC)
    results: int
    up: int

    @property
    def state(self) -> str:
        """nodata | up (every probe passed) | partial (>= 95%) | down: never "up" without data."""
        if not self.results:
            return "nodata"
        share = self.up / self.results
        return "up" if share == 1 else "partial" if share >= 0.95 else "down"

    @property
    def title(self) -> str:
        if not self.results:
            return f"{self.date}: no data"
        return f"{self.date}: {100 * self.up / self.results:.2f}% up ({self.up} of {self.results} probes)"


def _days(buckets: Sequence[CheckBucket], first_day_us: int) -> list[Day]:
    by_t = {b.t: b for b in buckets}
    out = []
    for i in range(BAR_DAYS):
        t = first_day_us + i * DAY_US
        b = by_t.get(t)
        out.append(Day(format_ts(t)[:10], b.results if b else 0, b.up if b else 0))
    return out


def _bar_start(now_us: int) -> int:
    return (now_us // DAY_US - (BAR_DAYS - 1)) * DAY_US  # today is the last cell


def _failures(store: Store, project_id: int, check: Check) -> list[dict[str, Any]]:
    q = And((results_query(check.name), Field("attrs.up", "=", "false")))
    found = store.search(project_id, SearchRequest(q, None, None, FAILURES))
    return [{"ts": format_ts(ev["ts"]), "message": ev.get("message") or ""} for ev in found]


def checks_page(store: Store, project: Project, config: Sequence[Check], now_us: int, page: int = 1) -> dict[str, Any]:
    """The Checks page: `PAGE_SIZE` checks from page `page` (1-based), each with its status,
    90-day bar (`days`), 24 h chart points (`chart`: [{"t", "latency_ms", "results", "up"}]) and
    last failures."""
    everything = project_checks(store, project, config)
    pages = max(1, -(-len(everything) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    shown = everything[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    names = [c.name for c in shown]
    first_day = _bar_start(now_us)
    bars = store.check_series(project.id, names, first_day, now_us + 1, DAY_US)
    chart_start = (now_us - DAY_US) // CHART_BUCKET_US * CHART_BUCKET_US
    charts = store.check_series(project.id, names, chart_start, now_us + 1, CHART_BUCKET_US)
    out = []
    for check in shown:
        status = check_status(store, project.id, check, now_us)
        status["public"] = check.public
        status["days"] = _days(bars.get(check.name, []), first_day)
        status["chart"] = [
            {"t": format_ts(b.t), "latency_ms": b.latency_ms, "results": b.results, "up": b.up}
            for b in charts.get(check.name, [])
        ]
        status["failures"] = _failures(store, project.id, check) if status["up"] is not None else []
        out.append(status)
    return {
        "checks": out,
        "page": page,
        "pages": pages,
        "total": len(everything),
        "chart_start": format_ts(chart_start),
        "chart_end": format_ts(now_us),
    }


def status_page(store: Store, project: Project, config: Sequence[Check], now_us: int) -> dict[str, Any]:
    """A project's public status page: its checks marked `public` only (at most PAGE_SIZE), and
    of each only its name, state, uptime and 90-day bar: never the target, status or failure
    messages, which may name internal hosts."""
    public = [c for c in project_checks(store, project, config) if c.public][:PAGE_SIZE]
    first_day = _bar_start(now_us)
    bars = store.check_series(project.id, [c.name for c in public], first_day, now_us + 1, DAY_US)
    out = []
    for check in public:
        status = check_status(store, project.id, check, now_us)
        out.append(
            {
                "name": check.name,
                "up": status["up"],
                "last_checked": status["last_checked"],
                "uptime_24h": status["uptime_24h"],
                "uptime_30d": status["uptime_30d"],
                "days": _days(bars.get(check.name, []), first_day),
            }
        )
    return {"project": project.name, "checks": out, "generated_at": format_ts(now_us)}

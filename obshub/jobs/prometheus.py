"""Prometheus as the source of a defined metric (docs/metrics.md#prometheus-as-a-source): the
value of one hour or day is a PromQL expression evaluated through the server's HTTP API
(`/api/v1/query`), so QoS numbers (p95 latency, error ratio, uptime) land in the same rollups as
event KPIs.

The bucket [t, t + interval) is evaluated once, at its end (at `now` for the current bucket,
which then covers [t, now)), with a range equal to the bucket:
- an expression holding `$__range` gets it replaced by the bucket's length in seconds
  (`sum(increase(http_requests_total[$__range]))`: the requests of the hour);
- any other expression is averaged over the bucket, `avg_over_time((EXPR)[<length>s:])`, a
  subquery at the server's default resolution (its evaluation_interval, 1 min by default).

One series -> the bucket's total row. With `group_by` (a label name), each series is a group
named by that label's value, the top `max_groups` by value (the rest dropped: ratios and
quantiles do not add up, so there is no `other`), and the total row has no value. A row's
`count` is the number of series it stands for (0: no data). The server's URL is a setting
(`prometheus_url`), never part of a definition: API tokens cannot aim the hub anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import httpx

from obshub.query.metrics import MetricDef, group_names
from obshub.store.base import ROLLUP_INTERVALS, RollupRow

__all__ = ["TIMEOUT_S", "PrometheusError", "bucket_query", "compute_prometheus"]

TIMEOUT_S = 10.0  # per query; a backfilled day is 25 of them
RANGE = "$__range"


class PrometheusError(Exception):
    """The server could not be reached or refused the query; the text is shown as `last_error`."""


def bucket_query(promql: str, t: int, interval: str, now: int) -> tuple[str, float]:
    """(the expression sent, its evaluation time in seconds) for the bucket starting at `t` (µs)."""
    end = min(t + ROLLUP_INTERVALS[interval], now)
    seconds = max(1, (end - t) // 1_000_000)
    expr = promql.replace(RANGE, f"{seconds}s") if RANGE in promql else f"avg_over_time(({promql})[{seconds}s:])"
    return expr, end / 1_000_000


def _query(client: httpx.Client, url: str, expr: str, at: float) -> list[tuple[dict[str, str], float | None]]:
    try:
        r = client.post(f"{url.rstrip('/')}/api/v1/query", data={"query": expr, "time": f"{at:.3f}"})
    except httpx.HTTPError as e:
        raise PrometheusError(f"prometheus_url unreachable: {type(e).__name__}: {e}"[:300]) from None
    try:
        body = r.json()
    except ValueError:
        raise PrometheusError(f"prometheus answered {r.status_code} without JSON") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        what = body.get("error", "") if isinstance(body, dict) else ""
        raise PrometheusError(f"prometheus refused the query ({r.status_code}): {str(what)[:300]}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return [({}, _number(result[1]))]
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusError(f"the expression gives a {kind}, expected an instant vector or a scalar")
    return [(dict(s.get("metric") or {}), _number(s["value"][1])) for s in result]


def _number(text: object) -> float | None:
    try:
        v = float(str(text))
    except ValueError:
        return None
    return v if math.isfinite(v) else None  # NaN (0/0 ratios), ±Inf: no value


def compute_prometheus(
    client: httpx.Client, url: str, m: MetricDef, interval: str, t: int, now: int
) -> list[RollupRow]:
    """The rows of one bucket. PrometheusError when the server fails or the result does not fit
    the definition (several series without group_by)."""
    if not url:
        raise PrometheusError('datasource = "prometheus" needs the hub setting prometheus_url')
    expr, at = bucket_query(m.promql, t, interval, now)
    series = _query(client, url, expr, at)
    if m.group_by is None:
        if len(series) > 1:
            raise PrometheusError(
                f"the expression gives {len(series)} series: aggregate them (sum, avg...) or set group_by to a label"
            )
        value = series[0][1] if series else None
        return [RollupRow(m.name, "", interval, t, 1 if series else 0, value)]
    keyed: Sequence[tuple[str, float | None]] = [(labels.get(m.group_by, ""), v) for labels, v in series]
    # Top by value (no value last), ties by name: the same order whatever the server's order.
    top = sorted(keyed, key=lambda kv: (kv[1] is None, -(kv[1] or 0.0), kv[0]))[: m.max_groups]
    rows = [RollupRow(m.name, "", interval, t, len(series), None)]
    for (_, v), name in zip(top, group_names([k for k, _ in top]), strict=True):
        rows.append(RollupRow(m.name, name, interval, t, 1, v))
    return rows

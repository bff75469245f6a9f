"""`Store.aggregates`: many measures over one window in one read, the same on every backend
(the alert rules' batch: obshub/alerts/evaluate.py)."""

from __future__ import annotations

import pytest

from obshub.store.base import Aggregate
from obshub.store.querylang import parse
from tests.factories import event, now_us
from tests.hubproc import LiveHub

MIN = 60_000_000


def _spec(q: str, measure: str = "count", attr: str = "") -> Aggregate:
    return Aggregate(parse(q), measure, attr)


def test_many_measures_over_one_window(hub: LiveHub) -> None:
    t = now_us()
    evs = [
        event(
            ts=t - 10 * MIN + i,
            service="billing",
            user_id=f"u{i % 3}",
            message="payment failed timeout",
            attrs={"latency_ms": float(i + 1)},
        )
        for i in range(20)
    ]
    evs += [event(ts=t - 2 * MIN, service="api", host="web-3", message="ok", attrs={"latency_ms": "fast"})]
    evs += [event(ts=t - 60 * MIN, service="billing", message="old timeout", attrs={"latency_ms": 1000})]
    assert hub.ingest(evs).status_code == 200
    specs = [
        _spec("service:billing"),
        _spec("service:billing", "users"),
        _spec("service:billing", "avg", "latency_ms"),
        _spec("service:billing", "max", "latency_ms"),
        _spec("service:billing", "p95", "latency_ms"),
        _spec("timeout"),  # a word: the full-text index, bounded to the window
        _spec("host:web-3"),
        _spec("host:web-3", "avg", "latency_ms"),  # a string is not a number
        _spec("host:nowhere", "users"),
        Aggregate(None),
        _spec("-service:billing OR level:error"),
    ]
    got = hub.store.aggregates(hub.project_id, t - 30 * MIN, t + 1, specs)
    assert got[:4] == [20, 3, 10.5, 20.0]
    assert got[4] == pytest.approx(19.05, abs=0.6)  # linear between ranks; OpenSearch: TDigest's estimate
    assert got[5:] == [20, 1, None, 0, 21, 1]
    # the window decides: the old event counts only when the window holds it
    wide = hub.store.aggregates(
        hub.project_id, t - 90 * MIN, t + 1, [_spec("timeout"), _spec("service:billing", "max", "latency_ms")]
    )
    assert wide == [21, 1000.0]
    empty = hub.store.aggregates(hub.project_id, t + MIN, t + 2 * MIN, specs[:3])
    assert empty == [0, 0, None]
    assert hub.store.aggregates(hub.project_id, t - MIN, t, []) == []
    with pytest.raises(ValueError, match="measure"):
        hub.store.aggregates(hub.project_id, t - MIN, t, [Aggregate(None, "median", "x")])


def test_a_thousand_specs_in_one_call(hub: LiveHub) -> None:
    t = now_us()
    assert hub.ingest([event(ts=t - MIN, host=f"web-{i % 10}") for i in range(50)]).status_code == 200
    specs = [_spec(f"host:web-{i % 12}") for i in range(1000)]
    got = hub.store.aggregates(hub.project_id, t - 5 * MIN, t + 1, specs)
    assert got == [5 if i % 12 < 10 else 0 for i in range(1000)]

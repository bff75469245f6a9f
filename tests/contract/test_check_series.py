"""`Store.check_series` on both stores: uptime results per check and time bucket (the Checks
page's 90-day bars and response time chart), counted the same way by SQLite and OpenSearch."""

from __future__ import annotations

import pytest

from obshub.auth import create_project
from obshub.events import normalize
from obshub.store import Store
from obshub.store.base import CHECK_SERIES_MAX, CheckBucket
from obshub.uptime.config import parse_check
from obshub.uptime.model import ProbeResult
from obshub.uptime.writes import record, write_definition

DAY = 86_400_000_000
HOUR = DAY // 24
T0 = 20_000 * DAY  # 2024-10-04 00:00 UTC: a day boundary


def test_results_per_check_and_day(store: Store) -> None:
    pid = create_project(store, "series", "http://127.0.0.1:0")["project_id"]
    other = create_project(store, "elsewhere", "http://127.0.0.1:0")["project_id"]
    api = parse_check({"name": "api", "target": "http://127.0.0.1:1/"})
    db = parse_check({"name": "db", "target": "tcp://127.0.0.1:1"})
    probes = [(0, 1, True, 10.0), (0, 2, True, 30.0), (0, 3, False, None), (2, 5, True, 20)]
    for slot, (day, hour, up, ms) in enumerate(probes, 1):
        assert record(
            store, pid, api, slot, ProbeResult(up, "x", ms, 200 if ms else None), T0 + day * DAY + hour * HOUR
        )
    assert record(store, pid, db, 1, ProbeResult(False, "refused"), T0 + 4 * HOUR)
    assert record(store, other, api, 1, ProbeResult(True, "x", 5.0, 200), T0 + HOUR)  # another project
    write_definition(store, pid, "api", api, T0 + HOUR)  # a definition is no result
    log = {"id": "log-1", "ts": T0 + HOUR, "kind": "log", "name": "api", "attrs": {"up": True}}
    store.write_events(pid, [normalize(log, T0 + HOUR)])  # another kind, named like the check: no result
    out = store.check_series(pid, ["api", "db", "none"], T0, T0 + 3 * DAY, DAY)
    assert out == {
        "api": [CheckBucket(T0, 3, 2, 20.0), CheckBucket(T0 + 2 * DAY, 1, 1, 20.0)],
        "db": [CheckBucket(T0, 1, 0, None)],
    }
    # [start, end) and hour buckets.
    assert store.check_series(pid, ["api"], T0 + 2 * HOUR, T0 + 3 * HOUR, HOUR) == {
        "api": [CheckBucket(T0 + 2 * HOUR, 1, 1, 30.0)]
    }
    assert store.check_series(pid, [], T0, T0 + DAY, DAY) == {}
    with pytest.raises(ValueError, match="at most"):
        store.check_series(pid, [f"c{i}" for i in range(CHECK_SERIES_MAX + 1)], T0, T0 + DAY, DAY)

"""Aggregations with a bounded cost, the same on every backend: the errors list counts the last
14 days unless told otherwise, facets and analytics' properties and values count the newest N
matches and say when there were more, the sparklines' hourly counts."""

from __future__ import annotations

from typing import Any

from obshub.store.querylang import parse
from tests.contract.test_errors_api import err, groups
from tests.factories import event, now_us
from tests.hubproc import LiveHub

DAY = 86_400_000_000
HOUR = 3_600_000_000


def test_errors_list_counts_the_last_14_days_unless_from_is_given(hub: LiveHub) -> None:
    t = now_us()
    hub.ingest(
        [
            err("old_view", "'a'", ts=t - 20 * DAY),
            err("old_view", "'b'", ts=t - 20 * DAY + 1),
            err("both", "'c'", ts=t - 20 * DAY),
            err("both", "'d'", ts=t - HOUR),
            err("new_view", "'e'", ts=t - HOUR),
        ]
    )
    recent = {g["culprit"]: g["count"] for g in groups(hub)}
    assert recent == {"shop.web in both": 1, "shop.web in new_view": 1}
    wider = {g["culprit"]: g["count"] for g in groups(hub, **{"from": "-30d"})}
    assert wider == {"shop.web in both": 2, "shop.web in new_view": 1, "shop.web in old_view": 2}
    assert {g["culprit"]: g["count"] for g in groups(hub, **{"from": ""})} == wider  # `from=`: every occurrence
    assert [g["culprit"] for g in groups(hub, q="user_id:nobody", **{"from": ""})] == []


def _facet_events(t: int) -> list[dict[str, Any]]:
    """12 events: the newest 5 are 3 x web-1/error and 2 x web-2/info; two share a timestamp
    so the cut between them goes by id, as search orders them."""
    evs = [event(id=f"f-{i:02d}", ts=t - 100 + i, host="web-3", level="warning") for i in range(7)]
    evs += [
        event(id="f-07", ts=t - 50, host="web-2", level="info"),
        event(id="f-08", ts=t - 40, host="web-1", level="error"),
        event(id="f-09", ts=t - 40, host="web-2", level="info"),  # same ts as f-08: f-09 is newer
        event(id="f-10", ts=t - 30, host="web-1", level="error"),
        event(id="f-11", ts=t - 20, host="web-1", level="error"),
    ]
    return evs


def test_facets_count_the_newest_matches_and_say_when_there_were_more(hub: LiveHub) -> None:
    t = now_us()
    hub.ingest(_facet_events(t))
    store, pid = hub.store, hub.project_id
    f = store.facets(pid, None, t - DAY, None, ["host", "level"], 8, sample=5)
    assert (f.counted, f.approximate) == (5, True)
    assert f.value == {"host": [("web-1", 3), ("web-2", 2)], "level": [("error", 3), ("info", 2)]}
    f = store.facets(pid, None, t - DAY, None, ["host", "level"], 8, sample=3)  # cut between f-09 and f-08
    assert f.value["host"] == [("web-1", 2), ("web-2", 1)] and f.counted == 3
    f = store.facets(pid, None, t - DAY, None, ["host"], 1, sample=12)
    assert (f.value, f.counted, f.approximate) == ({"host": [("web-3", 7)]}, 12, False)  # exactly all: exact
    # with a query: the newest 9 of its 10 matches (the oldest web-3 warning is left out)
    f = store.facets(pid, parse("host:web-1 OR host:web-3"), t - DAY, None, ["level"], 8, sample=9)
    assert (f.value, f.counted, f.approximate) == ({"level": [("warning", 6), ("error", 3)]}, 9, True)
    f = store.facets(pid, parse("host:nowhere"), t - DAY, None, ["level"], 8)
    assert (f.value, f.counted, f.approximate) == ({"level": []}, 0, False)


def test_properties_and_values_count_the_newest_occurrences(hub: LiveHub) -> None:
    t = now_us() - HOUR
    hub.ingest(
        [event(kind="event", name="buy", ts=t + i, attrs={"plan": "old", "legacy": 1}) for i in range(4)]
        + [event(kind="event", name="buy", ts=t + 10 + i, attrs={"plan": "pro"}) for i in range(3)]
    )
    store, pid = hub.store, hub.project_id
    props = store.event_properties(pid, "buy", None, None, sample=3)
    assert (props.value, props.counted, props.approximate) == (["plan"], 3, True)
    props = store.event_properties(pid, "buy", None, None)
    assert (props.value, props.counted, props.approximate) == (["legacy", "plan"], 7, False)
    vals = store.property_values(pid, "buy", "plan", None, None, 10, sample=4)
    assert (vals.value, vals.counted, vals.approximate) == ([("pro", 3), ("old", 1)], 4, True)
    r = hub.get("/api/v1/analytics/values", event="buy", property="plan").json()
    assert r == {
        "values": [{"value": "old", "count": 4}, {"value": "pro", "count": 3}],
        "counted": 7,
        "approximate": False,
    }


def test_group_series_counts_occurrences_per_hour(hub: LiveHub) -> None:
    t = now_us()
    h0 = t - t % HOUR - 2 * HOUR
    hub.ingest(
        [
            err("a", "'1'", ts=h0 + 5),
            err("a", "'2'", ts=h0 + HOUR - 1),
            err("a", "'3'", ts=h0 + 2 * HOUR),
            err("b", "'4'", ts=h0 + HOUR),
            event(ts=h0 + 7, message="not an error"),
        ]
    )
    ga = next(g["id"] for g in groups(hub) if g["culprit"] == "shop.web in a")
    gb = next(g["id"] for g in groups(hub) if g["culprit"] == "shop.web in b")
    series = hub.store.group_series(hub.project_id, h0, t + 1, HOUR)
    assert series == {ga: [(h0, 2), (h0 + 2 * HOUR, 1)], gb: [(h0 + HOUR, 1)]}
    assert hub.store.group_series(hub.project_id, h0 + HOUR, h0 + 2 * HOUR, HOUR) == {gb: [(h0 + HOUR, 1)]}

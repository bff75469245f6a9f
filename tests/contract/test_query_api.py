"""Search, trace, user timeline and analytics round trips on every backend."""

from __future__ import annotations

import pytest

from tests.factories import event, now_us, request_events
from tests.hubproc import LiveHub


@pytest.fixture
def loaded(hub: LiveHub) -> LiveHub:
    t = now_us() - 3_600_000_000
    evs = [
        event(id="q1", message="payment timed out for order 77", level="error", service="api", host="web-1",
              attrs={"duration_ms": 900, "plan": "pro"}, ts=t),
        event(id="q2", message="payment ok", level="info", service="api", host="web-2",
              attrs={"duration_ms": 120, "plan": "free"}, ts=t + 1000),
        event(id="q3", message="cache miss", level="warning", service="web", host="web-3",
              attrs={"duration_ms": "600", "plan": "pro"}, ts=t + 2000),
        event(id="q4", message="user logged in", level="debug", service="web", host="web-1", user_id="42",
              request_id="rq-4", ts=t + 3000, env="prod"),
    ]
    assert hub.ingest(evs).json()["accepted"] == 4
    return hub


def ids(h: LiveHub, q: str, **kw: str) -> set[str]:
    r = h.get("/api/v1/search", q=q, **kw)
    assert r.status_code == 200, r.text
    return {e["id"] for e in r.json()["events"]}


@pytest.mark.parametrize(("q", "expected"), [
    ("", {"q1", "q2", "q3", "q4"}),
    ("payment", {"q1", "q2"}),
    ('"timed out"', {"q1"}),
    ('"out timed"', set()),
    ("level:error", {"q1"}),
    ("level:warn", {"q3"}),
    ("level:>=warning", {"q1", "q3"}),
    ("service:api host:web-2", {"q2"}),
    ("-host:web-1", {"q2", "q3"}),
    ("NOT service:web", {"q1", "q2"}),
    ("host:web-1 OR host:web-3", {"q1", "q3", "q4"}),
    ("(host:web-1 OR host:web-3) level:error", {"q1"}),
    ("duration_ms:>500", {"q1"}),  # the string "600" is not a number: not matched
    ("attrs.duration_ms:<=120", {"q2"}),
    ("attrs.plan:pro", {"q1", "q3"}),
    ("plan:pro -payment", {"q3"}),
    ("user_id:42", {"q4"}),
    ("rq-4", {"q4"}),  # a bare id finds the event carrying it
    ("request_id:*", {"q4"}),
    ("host:web-*", {"q1", "q2", "q3", "q4"}),
    ("paym*", {"q1", "q2"}),
    ("env:prod", {"q4"}),
    ("-env:prod", {"q1", "q2", "q3"}),  # events without the field match a negation
])
def test_query_language(loaded: LiveHub, q: str, expected: set[str]) -> None:
    assert ids(loaded, q, **{"from": "-7d"}) == expected


def test_syntax_error_is_400_with_column(hub: LiveHub) -> None:
    r = hub.get("/api/v1/search", q='level:error (host:a OR')
    assert r.status_code == 400
    assert r.json()["column"] >= 13
    r = hub.get("/api/v1/search", q='level:loud')
    assert r.status_code == 400 and "loud" in r.json()["error"]


def test_bad_parameters_are_400(hub: LiveHub) -> None:
    for params in ({"from": "yesterday"}, {"limit": "abc"}, {"limit": "0"}, {"limit": "100000"},
                   {"cursor": "garbage!"}, {"from": "-1h", "to": "-2h"}):
        r = hub.get("/api/v1/search", **params)
        assert r.status_code == 400, params
        assert r.json()["error"]


def test_time_range_and_relative_times(hub: LiveHub) -> None:
    t = now_us()
    hub.ingest([event(id="old", ts=t - 3 * 86_400_000_000), event(id="new", ts=t - 60_000_000)])
    assert ids(hub, "", **{"from": "-1h"}) == {"new"}
    assert ids(hub, "", **{"from": "-7d", "to": "-1d"}) == {"old"}
    assert ids(hub, "", **{"from": "-7d"}) == {"old", "new"}


def test_cursor_pagination_visits_every_event_once(hub: LiveHub) -> None:
    t = now_us() - 1_000_000_000
    evs = [event(id=f"p{i:03d}", ts=t + (i // 3) * 1000) for i in range(250)]  # ties on ts too
    hub.ingest(evs)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 40, **({"cursor": cursor} if cursor else {})}
        data = hub.get("/api/v1/search", **params).json()
        seen.extend(e["id"] for e in data["events"])
        pages += 1
        cursor = data["next_cursor"]
        if not cursor:
            break
    assert pages == 7
    assert len(seen) == 250 and set(seen) == {e["id"] for e in evs}
    ts = [e["ts"] for e in hub.search_all()]
    assert ts == sorted(ts, reverse=True)


def test_trace_spans_hosts_and_kinds_oldest_first(hub: LiveHub) -> None:
    t = now_us() - 10_000_000
    evs = request_events("req-x", ["web-1", "web-2", "web-1"], t0=t)
    evs.append(event(kind="error", trace_id="req-x", host="web-2", ts=t + 500, error={"type": "KeyError", "value": "x"}))
    evs.append(event(kind="event", name="checkout", request_id="req-x", ts=t + 1500, service="web"))
    evs.append(event(request_id="req-other", ts=t))
    hub.ingest(evs)
    data = hub.get("/api/v1/trace/req-x").json()
    assert data["id"] == "req-x"
    assert len(data["events"]) == 5
    assert [e["ts"] for e in data["events"]] == sorted(e["ts"] for e in data["events"])
    assert data["hosts"] == ["web-1", "web-2"]
    assert set(data["services"]) == {"api", "web"}
    assert data["error_count"] == 1
    assert {e["kind"] for e in data["events"]} == {"log", "error", "event"}
    assert data["start"] == data["events"][0]["ts"] and data["end"] == data["events"][-1]["ts"]
    empty = hub.get("/api/v1/trace/nope").json()
    assert empty["events"] == [] and empty["start"] is None


def test_user_timeline_groups_requests_and_marks_host_switch(hub: LiveHub) -> None:
    t = now_us() - 100_000_000
    evs = request_events("r1", ["web-1"], user_id="u7", t0=t)
    evs += request_events("r2", ["web-1", "web-1"], user_id="u7", t0=t + 1_000_000)
    # r3: the first line (before auth) has no user_id, the rest does; it lands on web-2
    r3 = request_events("r3", ["web-2", "web-2"], t0=t + 2_000_000)
    r3[1]["user_id"] = "u7"
    r3.append(event(request_id="r3", host="web-2", user_id="u7", kind="error", ts=t + 2_005_000,
                    error={"type": "KeyError", "value": "'cart'"}))
    evs += r3 + request_events("r-other", ["web-3"], user_id="u8", t0=t)
    hub.ingest(evs)
    data = hub.get("/api/v1/users/u7/timeline").json()
    assert data["user_id"] == "u7"
    assert [r["request_id"] for r in data["requests"]] == ["r1", "r2", "r3"]
    r = {x["request_id"]: x for x in data["requests"]}
    assert r["r3"]["events"] == 3  # includes the line logged before the user was known
    assert r["r3"]["errors"] == 1 and r["r3"]["hosts"] == ["web-2"]
    assert [x["host_switch"] for x in data["requests"]] == [False, False, True]
    assert r["r3"]["previous_host"] == "web-1"
    assert data["host_switches"] == 1
    assert len(data["events"]) == 6
    assert [e["ts"] for e in data["events"]] == sorted(e["ts"] for e in data["events"])


def test_user_timeline_on_corrected_time(hub: LiveHub) -> None:
    """web-a runs 3 s fast, web-b 3 s slow (their agents stamp X-Obshub-Sent-At with those
    clocks). r1 enters web-a and calls web-b: by raw time it would start on web-b, r3 (web-b)
    would come before r2 and every request would look like a switch. Only r3 is one."""
    s = 1_000_000
    skew = {"web-a": 3 * s, "web-b": -3 * s}
    t = now_us() - 100 * s
    lines = {
        "web-a": [event(request_id="r1", host="web-a", user_id="u9", ts=t + skew["web-a"]),
                  event(request_id="r2", host="web-a", user_id="u9", ts=t + 2 * s + skew["web-a"])],
        "web-b": [event(request_id="r1", host="web-b", ts=t + 100_000 + skew["web-b"]),
                  event(request_id="r3", host="web-b", user_id="u9", ts=t + 4 * s + skew["web-b"])],
    }
    for host, evs in lines.items():
        for _ in range(2):  # a second batch (all duplicates): another clock sample
            r = hub.ingest(evs, headers={"X-Obshub-Sent-At": f"{(now_us() + skew[host]) / 1e6:.6f}"})
            assert r.status_code == 200, r.text
    data = hub.get("/api/v1/users/u9/timeline").json()
    assert [(x["request_id"], x["hosts"], x["host_switch"], x["previous_host"]) for x in data["requests"]] == [
        ("r1", ["web-a", "web-b"], False, None), ("r2", ["web-a"], False, "web-a"), ("r3", ["web-b"], True, "web-a")]
    assert data["host_switches"] == 1
    assert 2_500 <= data["skew_ms"]["web-a"] <= 3_000 and -3_500 <= data["skew_ms"]["web-b"] <= -3_000
    stored = {e["id"]: e["ts"] for e in hub.search_all("request_id:r1 OR request_id:r2 OR request_id:r3")}
    assert {e["id"]: e["ts"] for e in data["events"]} == stored  # `ts` as stored, raw
    assert [e["id"] for e in data["events"]][:2] == [lines["web-a"][0]["id"], lines["web-b"][0]["id"]]
    empty = hub.get("/api/v1/users/nobody/timeline").json()
    assert empty["requests"] == [] and empty["skew_ms"] == {}
    bad = hub.get("/api/v1/users/u9/timeline", **{"from": "soon"})
    assert bad.status_code == 400 and "from" in bad.json()["error"]


def test_analytics_endpoints(hub: LiveHub) -> None:
    t = now_us() - 2 * 3_600_000_000
    t -= t % 3_600_000_000  # start of an hour, so buckets are predictable
    evs = []
    for i in range(10):
        evs.append(event(kind="event", name="login", user_id=f"u{i % 4}", ts=t + i * 60_000_000,
                         attrs={"plan": "pro" if i % 2 else "free", "method": "sso"}))
    for i in range(3):
        evs.append(event(kind="event", name="checkout", user_id="u1", ts=t + 3_600_000_000 + i,
                         attrs={"amount": 10 + i}))
    evs.append(event(message="a log line, not an analytics event", ts=t))
    hub.ingest(evs)
    rng = {"from": "-1d"}
    names = hub.get("/api/v1/analytics/events", **rng).json()
    assert names == {"events": [{"name": "login", "count": 10}, {"name": "checkout", "count": 3}]}
    props = hub.get("/api/v1/analytics/properties", event="login", **rng).json()
    assert props == {"properties": ["method", "plan"], "counted": 10, "approximate": False}
    vals = hub.get("/api/v1/analytics/values", event="login", property="plan", **rng).json()
    assert vals == {"values": [{"value": "free", "count": 5}, {"value": "pro", "count": 5}],
                    "counted": 10, "approximate": False}
    series = hub.get("/api/v1/analytics/series", event="login", interval="hour",
                     **{"from": str(t // 1_000_000), "to": str((t + 3 * 3_600_000_000) // 1_000_000)}).json()
    assert [p["count"] for p in series["points"]] == [10, 0, 0]
    uniq = hub.get("/api/v1/analytics/series", event="login", interval="hour", unique="1",
                   **{"from": str(t // 1_000_000), "to": str((t + 3 * 3_600_000_000) // 1_000_000)}).json()
    assert [p["count"] for p in uniq["points"]] == [4, 0, 0]
    assert hub.get("/api/v1/analytics/values", event="login").status_code == 400  # property missing
    assert hub.get("/api/v1/analytics/series", interval="fortnight").status_code == 400

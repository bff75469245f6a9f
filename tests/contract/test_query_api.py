"""Search, trace, user timeline and analytics round trips on every backend."""

from __future__ import annotations

import itertools

import pytest

from tests.factories import event, now_us, request_events
from tests.hubproc import CLOCK_SAMPLES, LiveHub


@pytest.fixture
def loaded(hub: LiveHub) -> LiveHub:
    t = now_us() - 3_600_000_000
    evs = [
        event(
            id="q1",
            message="payment timed out for order 77",
            level="error",
            service="api",
            host="web-1",
            attrs={"duration_ms": 900, "plan": "pro"},
            ts=t,
        ),
        event(
            id="q2",
            message="payment ok",
            level="info",
            service="api",
            host="web-2",
            attrs={"duration_ms": 120, "plan": "free"},
            ts=t + 1000,
        ),
        event(
            id="q3",
            message="cache miss",
            level="warning",
            service="web",
            host="web-3",
            attrs={"duration_ms": "600", "plan": "pro"},
            ts=t + 2000,
        ),
        event(
            id="q4",
            message="user logged in",
            level="debug",
            service="web",
            host="web-1",
            user_id="42",
            request_id="rq-4",
            ts=t + 3000,
            env="prod",
        ),
    ]
    assert hub.ingest(evs).json()["accepted"] == 4
    return hub


def ids(h: LiveHub, q: str, **kw: str) -> set[str]:
    r = h.get("/api/v1/search", q=q, **kw)
    assert r.status_code == 200, r.text
    return {e["id"] for e in r.json()["events"]}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
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
    ],
)
def test_query_language(loaded: LiveHub, q: str, expected: set[str]) -> None:
    assert ids(loaded, q, **{"from": "-7d"}) == expected


def test_syntax_error_is_400_with_column(hub: LiveHub) -> None:
    r = hub.get("/api/v1/search", q="level:error (host:a OR")
    assert r.status_code == 400
    assert r.json()["column"] >= 13
    r = hub.get("/api/v1/search", q="level:loud")
    assert r.status_code == 400 and "loud" in r.json()["error"]


def test_bad_parameters_are_400(hub: LiveHub) -> None:
    for params in (
        {"from": "yesterday"},
        {"limit": "abc"},
        {"limit": "0"},
        {"limit": "100000"},
        {"cursor": "garbage!"},
        {"from": "-1h", "to": "-2h"},
    ):
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
    evs.append(
        event(kind="error", trace_id="req-x", host="web-2", ts=t + 500, error={"type": "KeyError", "value": "x"})
    )
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
    r3.append(
        event(
            request_id="r3",
            host="web-2",
            user_id="u7",
            kind="error",
            ts=t + 2_005_000,
            error={"type": "KeyError", "value": "'cart'"},
        )
    )
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
        "web-a": [
            event(request_id="r1", host="web-a", user_id="u9", ts=t + skew["web-a"]),
            event(request_id="r2", host="web-a", user_id="u9", ts=t + 2 * s + skew["web-a"]),
        ],
        "web-b": [
            event(request_id="r1", host="web-b", ts=t + 100_000 + skew["web-b"]),
            event(request_id="r3", host="web-b", user_id="u9", ts=t + 4 * s + skew["web-b"]),
        ],
    }
    for host, evs in lines.items():
        for _ in range(CLOCK_SAMPLES):  # batches after the first (all duplicates): more clock samples
            r = hub.ingest(evs, headers={"X-Obshub-Sent-At": f"{(now_us() + skew[host]) / 1e6:.6f}"})
            assert r.status_code == 200, r.text
    data = hub.get("/api/v1/users/u9/timeline").json()
    assert [(x["request_id"], x["hosts"], x["host_switch"], x["previous_host"]) for x in data["requests"]] == [
        ("r1", ["web-a", "web-b"], False, None),
        ("r2", ["web-a"], False, "web-a"),
        ("r3", ["web-b"], True, "web-a"),
    ]
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
        evs.append(
            event(
                kind="event",
                name="login",
                user_id=f"u{i % 4}",
                ts=t + i * 60_000_000,
                attrs={"plan": "pro" if i % 2 else "free", "method": "sso"},
            )
        )
    for i in range(3):
        evs.append(
            event(kind="event", name="checkout", user_id="u1", ts=t + 3_600_000_000 + i, attrs={"amount": 10 + i})
        )
    evs.append(event(message="a log line, not an analytics event", ts=t))
    hub.ingest(evs)
    rng = {"from": "-1d"}
    names = hub.get("/api/v1/analytics/events", **rng).json()
    assert names == {"events": [{"name": "login", "count": 10}, {"name": "checkout", "count": 3}]}
    props = hub.get("/api/v1/analytics/properties", event="login", **rng).json()
    assert props == {"properties": ["method", "plan"], "counted": 10, "approximate": False}
    vals = hub.get("/api/v1/analytics/values", event="login", property="plan", **rng).json()
    assert vals == {
        "values": [{"value": "free", "count": 5}, {"value": "pro", "count": 5}],
        "counted": 10,
        "approximate": False,
    }
    series = hub.get(
        "/api/v1/analytics/series",
        event="login",
        interval="hour",
        **{"from": str(t // 1_000_000), "to": str((t + 3 * 3_600_000_000) // 1_000_000)},
    ).json()
    assert [p["count"] for p in series["points"]] == [10, 0, 0]
    uniq = hub.get(
        "/api/v1/analytics/series",
        event="login",
        interval="hour",
        unique="1",
        **{"from": str(t // 1_000_000), "to": str((t + 3 * 3_600_000_000) // 1_000_000)},
    ).json()
    assert [p["count"] for p in uniq["points"]] == [4, 0, 0]
    assert hub.get("/api/v1/analytics/values", event="login").status_code == 400  # property missing
    assert hub.get("/api/v1/analytics/series", interval="fortnight").status_code == 400


@pytest.mark.parametrize(
    "path", ["/api/v1/errors", "/api/v1/search", "/api/v1/analytics/events", "/api/v1/analytics/values"]
)
def test_limit_is_an_integer_from_1_to_1000_on_every_list(hub: LiveHub, path: str) -> None:
    """One rule for every `limit`: a negative one once cut groups off the end of the error list,
    and on analytics returned every row on SQLite and none on OpenSearch."""
    t = now_us() - 60_000_000
    hub.ingest(
        [event(kind="event", name=f"e{i}", attrs={"plan": f"p{i}"}, ts=t + i) for i in range(3)]
        + [
            event(
                kind="error",
                error={
                    "type": "KeyError",
                    "value": "'x'",
                    "stack": [{"module": "m", "function": f"f{i}", "lineno": 1, "in_app": True}],
                },
                ts=t + i,
            )
            for i in range(3)
        ]
    )
    extra = {"event": "e1", "property": "plan"} if path.endswith("/values") else {}
    key = {
        "/api/v1/errors": "groups",
        "/api/v1/search": "events",
        "/api/v1/analytics/events": "events",
        "/api/v1/analytics/values": "values",
    }[path]
    for bad in ("-3", "-1", "0", "1001"):
        r = hub.get(path, limit=bad, **extra)
        assert r.status_code == 400, (bad, r.text)
        assert r.json() == {"error": "limit: must be between 1 and 1000"}  # names limit, no column
    assert hub.get(path, limit="x", **extra).json() == {"error": "limit: expected an integer, got 'x'"}
    assert len(hub.get(path, limit="1", **extra).json()[key]) == 1
    assert hub.get(path, limit="1000", **extra).status_code == 200


def test_a_ts_it_cannot_read_names_ts_once(hub: LiveHub) -> None:
    for path in ("/api/v1/search", "/api/v1/errors", "/api/v1/export"):
        r = hub.get(path, q="ts:>yesterday")
        assert r.status_code == 400
        assert r.json() == {"error": "ts: cannot parse 'yesterday' as RFC 3339 or an epoch number"}, path


def _pages(hub: LiveHub, user: str, limit: int, **params: str) -> list[dict]:
    """Every page of a user's timeline, newest first, following `next_cursor`."""
    pages, cursor = [], None
    while True:
        r = hub.get(f"/api/v1/users/{user}/timeline", limit=limit, **({"cursor": cursor} if cursor else {}), **params)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor does not advance"


def test_user_timeline_pages_through_every_request_once_in_order(hub: LiveHub) -> None:
    """23 requests (the user id on each one's last line only), analytics events between them
    and another user's requests: pages of 1..6 requests give every request exactly once, newest
    page first, and host switches at page boundaries are those of the one-page timeline."""
    s = 1_000_000
    t = now_us() - 600 * s
    entries = (
        ["web-1"] * 3
        + ["web-2"] * 2
        + ["web-1", "web-3", "web-3", "web-1"]
        + ["web-2"] * 5
        + ["web-3", "web-1", "web-2", "web-2", "web-1", "web-1", "web-3", "web-3", "web-2"]
    )
    evs, order = [], []
    for i, entry in enumerate(entries):
        rid = f"rq-{i:02d}"
        order.append(rid)
        hosts = [entry] + (["web-4"] if i % 3 == 0 else []) + [entry]  # some fan out to web-4
        lines = request_events(rid, hosts, t0=t + i * s)
        lines[-1]["user_id"] = "pager"
        evs += lines
        if i % 4 == 1:
            evs.append(event(kind="event", name="click", user_id="pager", host=entry, ts=t + i * s + 500_000))
        evs += request_events(f"other-{i}", ["web-5"], user_id="someone-else", t0=t + i * s + 1)
    assert hub.ingest(evs).json()["accepted"] == len(evs)

    whole = hub.get("/api/v1/users/pager/timeline", limit=500).json()
    assert [r["request_id"] for r in whole["requests"]] == order
    assert [r["hosts"][0] for r in whole["requests"]] == entries
    assert whole["total_requests"] == 23 and not whole["total_requests_capped"]
    assert whole["next_cursor"] is None and not whole["truncated"]
    switches = [(r["request_id"], r["previous_host"], r["host_switch"]) for r in whole["requests"]]
    assert whole["host_switches"] == sum(1 for a, b in itertools.pairwise(entries) if a != b) == 11
    whole_ids = sorted(e["id"] for e in whole["events"])
    assert len(whole_ids) == sum(
        1 for e in evs if e.get("user_id") != "someone-else" and not str(e.get("request_id", "")).startswith("other-")
    )

    default = hub.get("/api/v1/users/pager/timeline").json()  # 50 by default: all of them here
    assert [r["request_id"] for r in default["requests"]] == order
    for limit in (1, 2, 5, 6):
        pages = _pages(hub, "pager", limit)
        assert len(pages) == -(-23 // limit)
        assert all(len(p["requests"]) == limit for p in pages[:-1])
        listed = [r for p in reversed(pages) for r in p["requests"]]  # oldest page first
        assert [(r["request_id"], r["previous_host"], r["host_switch"]) for r in listed] == switches, limit
        assert sum(p["host_switches"] for p in pages) == whole["host_switches"]
        ids = [e["id"] for p in pages for e in p["events"]]
        assert sorted(ids) == whole_ids, limit  # every event once, analytics events too
        assert all(p["total_requests"] == 23 and not p["total_requests_capped"] for p in pages)
        assert all(p["truncated"] and p["next_cursor"] for p in pages[:-1])
        assert not pages[-1]["truncated"]
    # A range selects the user's own events: requests 5..9 only
    part = hub.get("/api/v1/users/pager/timeline", limit=2, **{"from": str(t + 5 * s), "to": str(t + 10 * s)}).json()
    assert part["total_requests"] == 5 and [r["request_id"] for r in part["requests"]] == ["rq-08", "rq-09"]
    assert part["requests"][0]["previous_host"] == "web-3"  # rq-07's entry host, from the next page


def test_user_timeline_long_request_and_event_cap(hub: LiveHub) -> None:
    """A request with 120 events whose user lines are at its start and its end (15 s apart),
    with six requests in between: it is listed once, on the page of its newest user line, with
    its first 100 events and `truncated`, whatever the page size."""
    s = 1_000_000
    t = now_us() - 600 * s
    long = [event(request_id="r-long", host="web-1", ts=t + i * 100_000, message=f"long {i}") for i in range(120)]
    long[0]["user_id"] = long[-1]["user_id"] = "lu"
    long[-1]["ts"] = t + 15 * s
    short = [e for i in range(1, 7) for e in request_events(f"r{i}", ["web-2"], user_id="lu", t0=t + i * s + 50)]
    assert hub.ingest(long + short).json()["accepted"] == 126
    for limit in (1, 2, 3, 7):
        pages = _pages(hub, "lu", limit)
        listed = [r["request_id"] for p in reversed(pages) for r in p["requests"]]
        assert sorted(listed) == ["r-long", "r1", "r2", "r3", "r4", "r5", "r6"], limit
        # on the newest page (its newest user line), first there (it started first)
        lr = pages[0]["requests"][0]
        assert lr["request_id"] == "r-long" and lr["hosts"] == ["web-1"]
        assert lr["events"] == 100 and lr["truncated"] and pages[0]["truncated"]
        assert all(not r["truncated"] for p in pages for r in p["requests"] if r["request_id"] != "r-long")
        assert all(p["total_requests"] == 7 for p in pages)


def test_user_timeline_bad_page_parameters(hub: LiveHub) -> None:
    hub.ingest(request_events("rb", ["web-1"], user_id="ub"))
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WzEsMl0"}, "cursor"),
    ):
        r = hub.get("/api/v1/users/ub/timeline", **params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"].startswith(f"{field}:"), r.text
    assert hub.get("/api/v1/users/ub/timeline", limit="500").status_code == 200


def test_count_user_requests_is_capped(hub: LiveHub) -> None:
    """The store counts distinct requests up to `cap` and answers cap + 1 for more."""
    t = now_us() - 60_000_000
    evs = [e for i in range(7) for e in request_events(f"c{i}", ["web-1", "web-2"], user_id="cu", t0=t + i * 10_000)]
    evs.append(event(user_id="cu", ts=t))  # no request id: not counted
    assert hub.ingest(evs).json()["accepted"] == 15
    store = hub.app.state.hub.store
    assert store.count_user_requests(hub.project_id, "cu", None, None, 10) == 7
    assert store.count_user_requests(hub.project_id, "cu", None, None, 7) == 7
    assert store.count_user_requests(hub.project_id, "cu", None, None, 3) == 4
    assert store.count_user_requests(hub.project_id, "cu", t + 20_000, t + 50_000, 10) == 3
    assert store.count_user_requests(hub.project_id, "nobody", None, None, 10) == 0
    got = store.request_events(hub.project_id, ["c1", "nope", "c2", "c1"], 1)
    assert {k: [e["host"] for e in v] for k, v in got.items()} == {"c1": ["web-1"], "c2": ["web-1"]}

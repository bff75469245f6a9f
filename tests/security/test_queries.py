"""Issue 23, "queries": hostile tenants and hostile queries must not hurt anyone else.

- Clock skew is per (project, host): project A's `web-b1` with a clock 1 h ahead does not reorder
  project B's trace of its own `web-b1`; the estimator's memory is bounded however many hosts
  clients invent. The hub's other structures keyed by client input are bounded too.
- Bad queries are 400s, never 500/503: deep nesting, long ORs, NUL, huge numbers, bad cursors,
  on both stores, and none of them marks the store down (`obshub_store_up`) or logs an outage.
- A property test (hypothesis) of the query API on both stores: only 200 or 400, ever.
"""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obshub.clock import SkewEstimator
from obshub.digest import Scrubber
from obshub.errors import QueryError
from obshub.store.base import SearchRequest
from obshub.store.querylang import MAX_DEPTH, MAX_TERMS, Or, Text
from obshub.uptime.config import parse_check
from obshub.uptime.scheduling import Uptime, run_all
from obshub.uptime.writes import write_definition
from tests.conftest import BACKENDS
from tests.factories import event, now_us, request_events
from tests.hubproc import LiveHub, metric
from tests.opensearch_node import drop_prefix
from tests.web.conftest import login_client

S = 1_000_000
HOUR_S = 3600


def _send(hub: LiveHub, token: str, lines: list[dict[str, Any]], skew_s: float) -> None:
    """As an agent whose clock is `skew_s` off would send them (X-Obshub-Sent-At)."""
    body = b"\n".join(orjson.dumps(x) for x in lines)
    r = hub.ingest(body, token=token, headers={"X-Obshub-Sent-At": f"{time.time() + skew_s:.6f}"})
    assert r.status_code == 200 and r.json()["accepted"] == len(lines), r.text


def _store_healthy(hub: LiveHub) -> None:
    """No request marked the store down or logged an outage."""
    assert metric(hub, "obshub_store_up") == 1
    assert not hub.app.state.hub.store_outage.failing


# ------------------------------------------------------------------------------ cross-tenant skew


def test_skew_of_one_project_never_reorders_another(hub: LiveHub) -> None:
    """B's request enters web-a1 and calls web-b1 100 ms later, both hosts on time. Project A
    also has a `web-b1`, whose clock runs 1 h ahead. B's trace keeps its order and reports no
    skew; A's own `web-b1` is corrected by its hour."""
    b = hub.new_project("b")
    t = now_us() - 60 * S
    trace = [
        event(id="b-1", request_id="rq-b", host="web-a1", ts=t, message="enter"),
        event(id="b-2", request_id="rq-b", host="web-b1", ts=t + 100_000, message="call"),
    ]
    _send(hub, b["ingest_token"], trace, 0)
    for _ in range(3):
        _send(hub, hub.ingest_token, [event(host="web-b1", request_id="rq-a")], HOUR_S)

    got = hub.get("/api/v1/trace/rq-b", token=b["read_token"]).json()
    assert [e["id"] for e in got["events"]] == ["b-1", "b-2"]
    # Both hosts' one sample is the same batch's (0, or the delay when the hub is slow): B's
    # web-b1 is estimated from B's batches only, not an hour ahead.
    assert got["skew_ms"]["web-b1"] == got["skew_ms"]["web-a1"] and abs(got["skew_ms"]["web-b1"]) < 60_000
    with httpx.Client(base_url=hub.url, timeout=30) as web:
        r = web.post("/login", data={"token": b["read_token"], "next": "/"}, headers={"Origin": hub.url})
        assert r.status_code == 303
        page = web.get("/trace/rq-b").text
    assert "this changes the order" not in page and page.index("enter") < page.index("call")

    mine = hub.get("/api/v1/trace/rq-a").json()
    assert 3_599_000 <= mine["skew_ms"]["web-b1"] <= 3_600_000


def test_skew_memory_is_bounded_by_skew_hosts(sqlite_store_url: str) -> None:
    """Every batch may name new hosts: the estimator keeps `skew_hosts` of them, the ones heard
    from most recently, and the hub's answers stay right for those."""
    hub = LiveHub(sqlite_store_url, skew_hosts=500).start()
    try:
        for batch in range(6):
            lines = [event(host=f"h-{batch}-{i}") for i in range(250)]
            _send(hub, hub.ingest_token, lines, 5)
        skew = hub.app.state.hub.skew
        assert len(skew) == 500
        assert skew.offset_us(hub.project_id, "h-5-249") > 4 * S  # the newest are kept
        assert skew.offset_us(hub.project_id, "h-0-0") == 0  # the oldest forgotten
    finally:
        hub.stop()


def test_skew_estimator_memory_per_host() -> None:
    """200k invented hosts grew a hub by 270 MiB and never gave it back. Bounded: 100,000
    observations of distinct hosts keep 2,000 keys; a key with a full window of samples (one
    batch a second for 10 min) takes under 2 KiB."""
    est = SkewEstimator(max_keys=2_000)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            est.observe(1, f"host-{i:06d}", 5 * S + i, 0)
        for i in range(2_000):  # a full window for every key left
            for minute in range(11):
                est.observe(1, f"host-{98_000 + i:06d}", 5 * S + minute, 0, now=1e6 + minute * 60.0)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(est) == 2_000
    assert used < 2_000 * 2048, used
    assert est.offset_us(1, "host-099999", now=1e6 + 600.0) >= 5 * S
    assert est.offset_us(2, "host-099999") == 0  # another project's host of the same name


def test_scrubber_memo_is_bounded_in_bytes() -> None:
    """The scrubber remembers its verdict per key; keys are client input (any length)."""
    scrub = Scrubber()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(2_000):
            assert not scrub.sensitive(f"{i:05d}" + "k" * 20_000)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert used < 2 * 1024 * 1024, used  # 40 MB of keys were kept before


def test_uptime_runner_forgets_deleted_checks(sqlite_hub: LiveHub) -> None:
    """Checks are defined and deleted by API: what the runner remembers per check (its last
    slot, its last state) goes when the check goes, instead of growing with every name used."""
    hub = sqlite_hub.app.state.hub
    pid, t = sqlite_hub.project_id, now_us()
    names = [f"churn-{i}" for i in range(20)]
    for i, name in enumerate(names):  # TEST-NET-1: never answers; the probe gives up after 0.2 s
        check = parse_check({"name": name, "target": "tcp://192.0.2.1:9", "timeout_s": 0.2}, "api", "test")
        assert write_definition(hub.store, pid, name, check, t + i, hub.scrubber)
    runner = Uptime(hub, max_parallel=20)
    try:
        run_all(runner, time.time())
        assert len(runner._up) == len(runner._last_slot) == 20
        for i, name in enumerate(names):
            assert write_definition(hub.store, pid, name, None, t + 100 + i, hub.scrubber)
        assert runner.checks(force=True) == []
        assert runner._up == {} and runner._last_slot == {}
    finally:
        runner.close()


# ------------------------------------------------------------------------------------ bad queries

NOT_1500 = "NOT " * 1500 + "x"
OR_1000 = " OR ".join(f"w{i}" for i in range(1000))
BIG = "9" * 5000  # past Python's 4,300-digit int() limit
HUGE_TS_CURSOR = base64.urlsafe_b64encode(orjson.dumps([2**64 - 1, "x"])).decode().rstrip("=")

BAD: list[tuple[str, dict[str, str], str]] = [
    ("/api/v1/search", {"q": NOT_1500}, "nests deeper than"),
    ("/api/v1/search", {"q": "(" * 1500 + "x" + ")" * 1500}, "nests deeper than"),
    ("/api/v1/search", {"q": OR_1000}, "more than 64 terms"),
    ("/api/v1/errors", {"q": OR_1000}, "more than 64 terms"),
    ("/api/v1/export", {"q": NOT_1500}, "nests deeper than"),
    ("/api/v1/search", {"from": "-99999999999999999999d"}, "from:"),
    ("/api/v1/search", {"from": "-9999999999w"}, "before 1970"),
    ("/api/v1/search", {"to": BIG}, "to:"),
    ("/api/v1/search", {"q": f"ts:>{BIG}"}, "ts:"),
    ("/api/v1/search", {"q": "level:²"}, "level"),
    ("/api/v1/search", {"limit": "99999999999999999999999"}, "limit:"),
    ("/api/v1/search", {"limit": BIG}, "limit:"),
    ("/api/v1/search", {"cursor": HUGE_TS_CURSOR}, "cursor:"),
    ("/api/v1/users/u-1/timeline", {"limit": "99999999999999999999"}, "limit:"),
    ("/api/v1/users/u-1/timeline", {"cursor": HUGE_TS_CURSOR}, "cursor:"),
    ("/api/v1/analytics/series", {"interval": "99999999999999999999w"}, "interval:"),
    ("/api/v1/analytics/series", {"interval": "9999w"}, "interval:"),
    ("/api/v1/analytics/events", {"limit": "99999999999999999999"}, "limit:"),
]


def test_bad_queries_are_400_and_the_store_stays_up(hub: LiveHub) -> None:
    hub.ingest([event(message="payment ok", user_id="u-1", request_id="r-1")])
    with hub.client(hub.read_token) as c:
        for path, params, says in BAD:
            r = c.get(path, params=params)
            assert r.status_code == 400, (path, params, r.status_code, r.text[:300])
            assert says in r.json()["error"], (path, r.text[:300])
    _store_healthy(hub)


NUL_QUERIES = [
    "a\x00b",
    "\x00",
    '"x\x00y"',
    "message:\x00",
    'message:"\x00"',
    "attrs.k:\x00",
    "host:a\x00*",
    "\x00* OR x",
    "user_id:\x00 -level:error",
]


def test_nul_in_queries_is_searched_not_an_outage(hub: LiveHub) -> None:
    hub.ingest([event(message="a b x y", host="a")])
    with hub.client(hub.read_token) as c:
        for q in NUL_QUERIES:
            for path in ("/api/v1/search", "/api/v1/errors"):
                r = c.get(path, params={"q": q})
                assert r.status_code in (200, 400), (path, q, r.status_code, r.text[:300])
            r = c.get("/api/v1/search", params={"from": "\x00"})
            assert r.status_code == 400 and r.json()["error"].startswith("from:")
    _store_healthy(hub)


def test_queries_at_the_limits_run_on_both_stores(hub: LiveHub) -> None:
    """What the parser lets through, every store runs: 64 words (rare and common), 16 levels."""
    t = now_us() - 60 * S
    hub.ingest([event(message=f"w{i} common", ts=t + i) for i in range(64)])
    words = " OR ".join(f"w{i}" for i in range(MAX_TERMS))
    fewer = " OR ".join(f"w{i}" for i in range(MAX_TERMS - 1))
    d = MAX_DEPTH
    deep = [  # what nests deepest in SQL (obshub/store/querylang.py)
        "NOT " * d + "w1",
        "".join(f"w{i} (w{i + 1} OR " for i in range(d)) + "x" + ")" * d,
        "".join(f"NOT (w{i} OR w{i + 1} c{i} " for i in range(d // 2)) + "x" + ")" * (d // 2),
    ]
    mixed = " OR ".join(f'"w{i}" OR w{i}* OR attrs.k{i}:{i}' for i in range(MAX_TERMS // 3))
    with hub.client(hub.read_token) as c:
        r = c.get("/api/v1/search", params={"q": words, "limit": 1000})
        assert r.status_code == 200, r.text[:300]
        assert len(r.json()["events"]) == 64
        for q in (*deep, mixed, f"common ({fewer})", f"-common OR ({fewer})", f"NOT ({fewer})"):
            for path in ("/api/v1/search", "/api/v1/errors", "/api/v1/export"):
                r = c.get(path, params={"q": q})
                assert r.status_code == 200, (q[:80], path, r.text[:300])
        r = c.get("/api/v1/search", params={"q": words + " OR one_more"})
        assert r.status_code == 400 and r.json()["column"] == len(words) + 5
        r = c.get("/api/v1/search", params={"q": "NOT " * (d + 1) + "x"})
        assert r.status_code == 400 and r.json()["column"] == 4 * d + 1
    with login_client(hub) as web:  # the search page adds facets (aggregations) to the search
        for q in deep:
            assert web.get("/search", params={"q": q}).status_code == 200, q
    _store_healthy(hub)


def test_a_query_the_store_refuses_is_a_query_error(hub: LiveHub) -> None:
    """The net under the parser's bounds: an AST past every store limit (made without the
    parser) is refused by the store as a QueryError (400), not StoreUnavailable (503)."""
    hub.ingest([event(message="w1 w2")])
    huge = Or(tuple(Text(f"w{i}") for i in range(2_000)))
    with pytest.raises(QueryError, match="the store cannot run this query"):
        hub.store.search(hub.project_id, SearchRequest(huge, None, None, 10, None, False))
    with pytest.raises(QueryError, match="the store cannot run this query"):
        hub.store.count(hub.project_id, huge, None, None)
    _store_healthy(hub)


def test_a_level_of_other_digits_is_one_rejected_line(hub: LiveHub) -> None:
    """`level: "²"` passed str.isdigit() and failed int(): the whole batch was a 500 (the
    query `level:²` too, above). Now the line is rejected, naming the field; the rest stored."""
    r = hub.ingest([{"message": "x", "level": "²"}, {"message": "y", "level": BIG}, {"message": "z", "level": "40"}])
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["accepted"] == 1 and [x["line"] for x in body["rejected"]] == [1, 2]
    assert all(x["error"].startswith("level: unknown level") for x in body["rejected"])
    assert [e["level"] for e in hub.search_all("z")] == ["error"]


def test_pages_refuse_bad_numbers_with_400(sqlite_hub: LiveHub) -> None:
    """`²` is a digit to str.isdigit() but not to int(): the live tail's `since` (and its
    Last-Event-ID) and the user page's `limit` were 500s."""
    with login_client(sqlite_hub) as web:
        as_sent = "²".encode("latin-1")  # a header is bytes: the hub reads them as latin-1
        for params, headers in (({"since": "²"}, {}), ({}, {"Last-Event-ID": as_sent}), ({"since": BIG}, {})):
            r = web.get("/tail/stream", params=params, headers=headers)
            assert r.status_code == 400 and "since:" in r.text, r.text[:200]
        r = web.get("/users/u-1", params={"limit": "²"})
        assert r.status_code == 400 and "limit:" in r.text
        r = web.get("/search", params={"q": NOT_1500})
        assert r.status_code == 400 and "nests deeper than" in r.text
        r = web.get("/search", params={"from": "-99999999999999999999d"})
        assert r.status_code == 400
    _store_healthy(sqlite_hub)


# ------------------------------------------------------------------------ the property test

MAX_EXAMPLES = 150  # per store: ~10 s each on 2 shared cores (1,200 per store found nothing more)

_names = st.sampled_from(["level", "host", "service", "message", "ts", "user_id", "request_id", "attrs.plan", "k"])
_ops = st.sampled_from(["", ">", ">=", "<", "<="])
_values = st.one_of(
    st.sampled_from(["error", "web-1", "pro", "*", "x*", "1795000000", "2026-01-01", "-1", "1e400", "²", "\x00"]),
    st.text(max_size=12),
    st.integers().map(str),
)
_words = st.one_of(
    st.sampled_from(["payment", "ok", "timed-out", "r-1", "u-1", "日本語", "\x00", "é*", "--", "a.b"]),
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters='()" '), min_size=1, max_size=10),
)
_terms = st.one_of(
    _words,
    st.builds(lambda n, o, v: f"{n}:{o}{v}", _names, _ops, _values),
    st.builds(lambda n, v: f'{n}:"{v}"', _names, st.text(max_size=8).map(lambda s: s.replace('"', ""))),
    _words.map(lambda w: f'"{w}"'),
)
_queries = st.recursive(
    _terms,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(" ".join),
        st.lists(inner, min_size=2, max_size=4).map(" OR ".join),
        inner.map(lambda q: f"({q})"),
        inner.map(lambda q: f"NOT {q}"),
        inner.map(lambda q: f"-{q}"),
    ),
    max_leaves=30,
)


def _mostly(usual: st.SearchStrategy[str | None], wild: st.SearchStrategy[str | None]) -> st.SearchStrategy[str | None]:
    """`usual` 4 times in 5: a wild value in every parameter at once would be refused by the
    first one checked, and the store would hardly ever see the query."""
    return st.integers(0, 4).flatmap(lambda i: wild if i == 0 else usual)


def _alternating(n: int) -> str:
    """`a0 (b0 OR a1 (b1 OR ... x))`: two AST levels per parenthesis, the deepest SQL per level."""
    return "".join(f"a{i} (b{i} OR " for i in range(n)) + "x" + ")" * n


_q = st.one_of(
    _queries,
    st.text(max_size=60),  # anything, NUL and unicode included
    st.integers(1, 40).map(lambda n: "NOT " * n + "x"),  # around the depth limit
    st.integers(1, 40).map(lambda n: "(" * n + "x" + ")" * n),
    st.integers(1, 30).map(_alternating),
    st.integers(1, 120).map(lambda n: " OR ".join(f"w{i}" for i in range(n))),  # around the term limit
)
_times = _mostly(
    st.sampled_from([None, None, "now", "-15m", "-24h", "-7d", "-30d", "2026-01-01"]),
    st.one_of(
        st.sampled_from(["-99999999999999999999d", "0", "1e3", "²", "\x00", "9" * 5000]),
        st.integers(-(2**70), 2**70).map(str),
        st.builds(lambda n, u: f"-{n}{u}", st.integers(0, 10**15), st.sampled_from("smhdw")),
        st.text(max_size=20),
    ),
)
_ints = _mostly(
    st.one_of(st.none(), st.integers(1, 1000).map(str)),
    st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=8), st.just("9" * 5000)),
)
_intervals = _mostly(
    st.sampled_from([None, "hour", "day", "5m", "1h", "366d"]),
    st.one_of(
        st.sampled_from(["0m", "1s", "367d", "²h"]),
        st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10**22), st.sampled_from("smhdw")),
        st.text(max_size=8),
    ),
)
_cursors = _mostly(
    st.none(),
    st.one_of(
        st.text(max_size=30),
        st.tuples(st.integers(-(2**70), 2**70), st.text(max_size=10)).map(  # well-formed, any ts
            lambda k: base64.urlsafe_b64encode(f"[{k[0]}, {json.dumps(k[1])}]".encode()).decode().rstrip("=")
        ),
    ),
)
_paths = st.sampled_from(
    [
        "/api/v1/search",
        "/api/v1/errors",
        "/api/v1/export",
        "/api/v1/analytics/series",
        "/api/v1/analytics/events",
        "/api/v1/analytics/values",
        "/api/v1/trace/r-1",
        "/api/v1/users/u-1/timeline",
    ]
)


@pytest.fixture(scope="module", params=BACKENDS)
def prop_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('props')}/obshub.db"
    else:
        base = request.getfixturevalue("opensearch_url")
        url = f"{base}{'&' if '?' in base else '?'}prefix=t{uuid.uuid4().hex[:10]}"
    hub = LiveHub(url).start()
    try:
        t = now_us() - 60 * S
        lines = [
            event(kind="error", level="error", error={"type": "E", "value": "boom"}, request_id="r-1", ts=t),
            *request_events("r-1", ["web-1", "web-2"], user_id="u-1", t0=t),
            event(kind="event", name="signup", user_id="u-1", attrs={"plan": "pro"}, ts=t),
            event(message="payment timed-out 日本語", attrs={"k": 5, "plan": "free"}, ts=t),
        ]
        assert hub.ingest(lines).json()["accepted"] == len(lines)
        yield hub
    finally:
        hub.stop()
        if request.param != "sqlite":
            drop_prefix(url)


@pytest.fixture(scope="module")
def prop_client(prop_hub: LiveHub) -> Iterator[httpx.Client]:
    with prop_hub.client(prop_hub.read_token) as c:
        yield c


@settings(max_examples=MAX_EXAMPLES, deadline=20_000, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=_paths,
    q=_mostly(_q, st.none()),
    start=_times,
    end=_times,
    limit=_ints,
    cursor=_cursors,
    interval=_intervals,
    order=st.sampled_from([None, None, "asc", "desc", "up"]),
)
def test_query_api_answers_only_200_or_400(
    prop_hub: LiveHub,
    prop_client: httpx.Client,
    path: str,
    q: str | None,
    start: str | None,
    end: str | None,
    limit: str | None,
    cursor: str | None,
    interval: str | None,
    order: str | None,
) -> None:
    params = {
        k: v
        for k, v in {
            "q": q,
            "from": start,
            "to": end,
            "limit": limit,
            "cursor": cursor,
            "interval": interval,
            "order": order,
            "event": "signup",
            "property": "plan",
            "format": "ndjson",
        }.items()
        if v is not None
    }
    url = f"{path}?" + "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params.items())
    r = prop_client.get(url)
    assert r.status_code in (200, 400), (path, params, r.status_code, r.text[:300])
    if r.status_code == 400:
        assert r.json()["error"]  # names what is wrong
    assert metric(prop_hub, "obshub_store_up") == 1, (path, params)


def test_property_run_left_the_store_up(prop_hub: LiveHub) -> None:
    """After the property test (same module and hub): no outage was logged."""
    _store_healthy(prop_hub)


@pytest.fixture
def sqlite_store_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/obshub.db"

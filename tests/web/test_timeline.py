"""The user journey on corrected time: `user_timeline` with hosts whose clocks are off, and the
demo's u-0007 on `obshub serve --demo` (API and page)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from obshub.clock import SkewEstimator
from obshub.demo import CLOCK_SKEW_US, DEMO_STORY
from obshub.events import format_ts, normalize, parse_ts
from obshub.query.search import user_timeline
from obshub.store import open_store
from obshub.store.base import Store
from tests.factories import event, now_us, request_events
from tests.hubproc import LiveHub, make_project
from tests.web.conftest import DemoServe, demo_journey, login_client, true_switches

S = 1_000_000
SKEW_US = {"fast": 3 * S, "slow": -3 * S, "ok": 0}  # host clock - true time
PID = 1  # the project the estimator heard these hosts from


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[Store, int]]:
    url = f"sqlite:///{tmp_path}/obshub.db"
    pid = int(make_project(url, "t")["project_id"])
    store = open_store(url)
    store.open()
    yield store, pid
    store.close()


def _clocks() -> SkewEstimator:
    """What each host's agent reports: a batch sent at true time t stamped with its clock, 1-2 ms
    on the way (the estimate is off by that much)."""
    est = SkewEstimator()
    t = now_us()
    for host, off in SKEW_US.items():
        for i, delay in enumerate((2_000, 1_000, 5_000)):
            est.observe(PID, host, t + i * S + off, t + i * S + delay)
    return est


def _journey(t: int) -> list[dict[str, Any]]:
    """(true time, host) of each line of six requests by user u1; timestamps as each host's clock
    writes them. r1 enters `fast` and calls `slow`: by raw time it starts on `slow` (3 s behind)
    and r3 (on `slow`, 4 s later) comes before r2."""
    steps = {
        "r1": [(0, "fast"), (200_000, "slow"), (300_000, "slow"), (500_000, "fast")],
        "r2": [(2 * S, "fast"), (2 * S + 1000, "fast")],
        "r3": [(4 * S, "slow"), (4 * S + 2000, "slow")],
        "r4": [(6 * S, "ok")],
        "r5": [(7 * S, "ok"), (7 * S + 10_000, "slow")],  # enters ok, calls slow: no switch
        "r6": [(8 * S, "fast")],
    }
    out = []
    for rid, lines in steps.items():
        for i, (dt, host) in enumerate(lines):
            e = event(request_id=rid, host=host, ts=t + dt + SKEW_US[host], message=f"{rid} #{i}")
            if i == len(lines) - 1:
                e["user_id"] = "u1"  # the user is known at the end of a request only
            out.append(e)
    out.append(event(request_id="r-other", host="slow", user_id="u2", ts=t))
    return out


def test_user_timeline_orders_and_switches_on_corrected_time(sqlite_store: tuple[Store, int]) -> None:
    store, pid = sqlite_store
    t = now_us() - 600 * S
    raw_events = _journey(t)
    store.write_events(pid, [normalize(e, now_us()) for e in raw_events])
    est = _clocks()
    data = user_timeline(store, pid, "u1", offsets_of=partial(est.offsets, PID))

    reqs = data["requests"]
    assert [r["request_id"] for r in reqs] == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert [r["hosts"][0] for r in reqs] == ["fast", "fast", "slow", "ok", "ok", "fast"]
    assert [(r["host_switch"], r["previous_host"]) for r in reqs] == [
        (False, None),
        (False, "fast"),
        (True, "fast"),
        (True, "slow"),
        (False, "ok"),
        (True, "ok"),
    ]
    assert data["host_switches"] == 3
    assert data["skew_ms"] == {h: est.offset_us(PID, h) // 1000 for h in SKEW_US}
    assert data["skew_ms"]["fast"] in range(2990, 3001) and data["skew_ms"]["slow"] in range(-3010, -2999)
    # Requests' start/end are on the true (hub) clock, within the estimate's error (a few ms)...
    assert abs(parse_ts(reqs[2]["start"]) - (t + 4 * S)) <= 5_000
    assert abs(parse_ts(reqs[0]["end"]) - (t + 500_000)) <= 5_000
    # ...events keep the host's own `ts`, in corrected order.
    stored = {e["id"]: format_ts(e["ts"]) for e in raw_events}
    assert all(e["ts"] == stored[e["id"]] for e in data["events"])
    assert [e["message"] for e in data["events"]][:4] == ["r1 #0", "r1 #1", "r1 #2", "r1 #3"]
    true_t = [parse_ts(e["ts"]) - SKEW_US[e["host"]] for e in data["events"]]
    assert true_t == sorted(true_t)

    # Without skew estimates (hosts that never sent X-Obshub-Sent-At) raw time is all there is.
    raw = user_timeline(store, pid, "u1")
    assert raw["skew_ms"] == {"fast": 0, "ok": 0, "slow": 0}
    # On raw time r1 "enters" on slow, and r3 and r5 come before r2.
    assert [(r["request_id"], r["hosts"][0]) for r in raw["requests"]] == [
        ("r1", "slow"),
        ("r3", "slow"),
        ("r5", "slow"),
        ("r2", "fast"),
        ("r4", "ok"),
        ("r6", "fast"),
    ]
    assert user_timeline(store, pid, "nobody", offsets_of=partial(est.offsets, PID)) == {
        "user_id": "nobody",
        "requests": [],
        "events": [],
        "host_switches": 0,
        "truncated": False,
        "skew_ms": {},
        "total_requests": 0,
        "total_requests_capped": False,
        "next_cursor": None,
    }


def _paged(store: Store, pid: int, user: str, limit: int, **kw: Any) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        pages.append(user_timeline(store, pid, user, limit=limit, cursor=cursor, **kw))
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages


def test_host_switch_at_a_page_boundary_is_judged_on_corrected_time(sqlite_store: tuple[Store, int]) -> None:
    """r2 enters `fast` and calls `slow` (3 s behind): on raw time it enters `slow`. With one
    request per page, r2's page reads r1 (the next page's first request) to judge r2, and r3's
    page reads r2: r2 is no switch (fast after fast) and r3 switches from `fast`, as on one page."""
    store, pid = sqlite_store
    t = now_us() - 600 * S
    steps = {
        "r1": [(0, "fast")],
        "r2": [(10 * S, "fast"), (10 * S + 200_000, "slow"), (10 * S + 400_000, "fast")],
        "r3": [(20 * S, "ok")],
    }
    raw_events = [
        event(request_id=rid, host=h, user_id="b1", ts=t + dt + SKEW_US[h], message=f"{rid} #{i}")
        for rid, lines in steps.items()
        for i, (dt, h) in enumerate(lines)
    ]
    store.write_events(pid, [normalize(e, now_us()) for e in raw_events])
    est = _clocks()
    whole = user_timeline(store, pid, "b1", offsets_of=partial(est.offsets, PID))
    expected = [("r1", None, False), ("r2", "fast", False), ("r3", "fast", True)]
    assert [(r["request_id"], r["previous_host"], r["host_switch"]) for r in whole["requests"]] == expected
    for limit in (1, 2):
        pages = _paged(store, pid, "b1", limit, offsets_of=partial(est.offsets, PID))
        listed = [r for p in reversed(pages) for r in p["requests"]]
        assert [(r["request_id"], r["previous_host"], r["host_switch"]) for r in listed] == expected, limit
        assert pages[0]["host_switches"] == 1
    newest = user_timeline(store, pid, "b1", limit=1, offsets_of=partial(est.offsets, PID))
    assert (
        newest["truncated"] and newest["total_requests"] == 3 and [e["message"] for e in newest["events"]] == ["r3 #0"]
    )
    assert newest["skew_ms"] == {"ok": 0}  # the hosts of the page's events only
    # On raw time (no estimates) r2 "enters" slow, so both boundaries would be switches.
    raw = [r for p in reversed(_paged(store, pid, "b1", 1)) for r in p["requests"]]
    assert [(r["previous_host"], r["host_switch"]) for r in raw] == [(None, False), ("fast", True), ("slow", True)]


def test_served_demo_timeline_has_only_the_true_host_switches(served_demo: DemoServe) -> None:
    user = DEMO_STORY["user_id"]
    journey = demo_journey(served_demo, user)
    switched = list(true_switches(journey))
    # The story's true switch (cart on web-1, checkout on web-2) is among them; the cross-host
    # request entering web-1 then the cart on web-1 is not a switch.
    assert DEMO_STORY["failing_request"] in switched and DEMO_STORY["cart_request"] not in switched

    r = served_demo.get(f"/api/v1/users/{user}/timeline", **{"from": "-1d"})
    assert r.status_code == 200, r.text
    data = r.json()
    reqs = data["requests"]
    assert [(x["request_id"], x["hosts"][0]) for x in reqs] == journey
    assert [x["request_id"] for x in reqs if x["host_switch"]] == switched
    assert data["host_switches"] == len(switched)
    # The estimate: exact when the loader reports the clocks, a few ms more when batches travel.
    assert data["skew_ms"]["web-1"] == data["skew_ms"]["web-3"] == 0
    assert -1600 < data["skew_ms"]["web-2"] <= CLOCK_SKEW_US["web-2"] // 1000
    i = [x["request_id"] for x in reqs].index(DEMO_STORY["failing_request"])
    lost, before = reqs[i], reqs[i - 1]
    assert before["request_id"] == DEMO_STORY["cart_request"] and before["hosts"] == ["web-1"]
    assert lost["host_switch"] and lost["previous_host"] == "web-1" and lost["hosts"] == ["web-2"]
    assert lost["errors"] >= 1
    cross = reqs[i - 2]
    assert cross["request_id"] == DEMO_STORY["cross_host_request"] and cross["hosts"] == ["web-1", "web-2"]
    # Events keep `ts` as stored (web-2's lines 1.5 s behind), though ordered on corrected time.
    stored = {e["id"]: e["ts"] for e in served_demo.search_all(f"request_id:{DEMO_STORY['cross_host_request']}")}
    assert {e["id"]: e["ts"] for e in data["events"] if e["id"] in stored} == stored


def _switch_rows(page_html: str) -> list[tuple[str, str]]:
    """(request id, badge text or '') of each row of the user page's request table."""
    rows = re.findall(r'<tr id="req-\d+" class="[^"]*">(.*?)</tr>', page_html, re.S)
    out = []
    for row in rows:
        rid = re.search(r'title="request_id: ([^"]+)"', row)
        badge = re.search(r'<span class="switchbadge">([^<]*)</span>', row)
        assert rid, row
        out.append((html.unescape(rid.group(1)), html.unescape(badge.group(1)) if badge else ""))
    return out


def test_served_demo_user_page_says_corrected_and_marks_true_switches(served_demo: DemoServe) -> None:
    user = DEMO_STORY["user_id"]
    journey = demo_journey(served_demo, user)
    switched = true_switches(journey)
    expected = [(rid, "⇄ switched {} → {}".format(*switched[rid]) if rid in switched else "") for rid, _ in journey]
    with login_client(served_demo) as web:
        r = web.get(f"/users/{user}")
    assert r.status_code == 200
    assert _switch_rows(r.text) == expected
    note = re.search(r'<p class="help skewnote">(.*?)</p>', r.text, re.S)
    assert note and "corrected time" in note.group(1)
    assert re.search(r"web-2 −1\.5\d\d s", note.group(1)), note.group(1)
    assert "Start (UTC, corrected)" in r.text
    callout = re.search(r'<div class="callout"[^>]*>(.*?)</div>', r.text, re.S)
    assert callout and "web-1 → web-2" in html.unescape(callout.group(1))


def test_user_page_without_skew_says_so(web_hub_no_skew: tuple[LiveHub, httpx.Client]) -> None:
    _, web = web_hub_no_skew
    r = web.get("/users/u-plain")
    assert r.status_code == 200
    assert "raw and corrected time are the same" in r.text and "Start (UTC)" in r.text


@pytest.fixture
def web_hub_no_skew(sqlite_hub: LiveHub) -> Iterator[tuple[LiveHub, httpx.Client]]:
    t = now_us() - 60 * S
    assert sqlite_hub.ingest([event(request_id="rp", user_id="u-plain", ts=t)]).status_code == 200
    with login_client(sqlite_hub) as c:
        yield sqlite_hub, c


def test_user_page_shows_one_page_of_requests_and_pages_to_older_ones(sqlite_hub: LiveHub) -> None:
    """60 requests: the page shows the newest 50, numbered from the newest, with a link to the
    older 10; the oldest request on the first page is marked as a switch from the request
    before it, which is on the second page."""
    t = now_us() - 3600 * S
    evs = [
        e
        for i in range(60)
        for e in request_events(f"rp-{i:02d}", ["web-1" if i < 10 else "web-2"], user_id="many", t0=t + i * S)
    ]
    evs += [
        event(id=f"click-{i}", kind="event", name="click", user_id="many", host="web-1", ts=t + i * S + 500_000)
        for i in (5, 30)
    ]
    assert sqlite_hub.ingest(evs).status_code == 200
    with login_client(sqlite_hub) as web:
        first = web.get("/users/many")
        assert first.status_code == 200
        rows = _switch_rows(first.text)
        assert [rid for rid, _ in rows] == [f"rp-{i:02d}" for i in range(10, 60)]
        assert rows[0] == ("rp-10", "⇄ switched web-1 → web-2") and all(not b for _, b in rows[1:])
        assert "Requests <strong>1–50</strong> of 60" in first.text
        assert first.text.count('rel="next">Older requests »</a>') == 2 and "« Newest requests" not in first.text
        assert "rp-00" not in first.text
        assert 'id="e-click-30"' in first.text and "e-click-5" not in first.text  # by its time
        older = html.unescape(re.search(r'<a href="([^"]+)" rel="next">Older requests', first.text).group(1))
        second = web.get(older)
        assert second.status_code == 200
        assert [rid for rid, _ in _switch_rows(second.text)] == [f"rp-{i:02d}" for i in range(10)]
        assert "Requests <strong>51–60</strong> of 60" in second.text
        assert "Older requests" not in second.text and "« Newest requests" in second.text
        assert 'id="e-click-5"' in second.text and "e-click-30" not in second.text
        small = web.get("/users/many", params={"limit": "7"})
        assert len(_switch_rows(small.text)) == 7 and "Requests <strong>1–7</strong> of 60" in small.text
        for bad in ("0", "x", "501"):
            r = web.get("/users/many", params={"limit": bad})
            assert r.status_code == 400 and "limit:" in html.unescape(r.text), bad
        r = web.get("/users/many", params={"cursor": "nope"})
        assert r.status_code == 400 and "cursor:" in html.unescape(r.text)

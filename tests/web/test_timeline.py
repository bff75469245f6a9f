"""The user journey on corrected time: `user_timeline` with hosts whose clocks are off, and the
demo's u-0007 on `obshub serve --demo` (API and page)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from obshub.demo import CLOCK_SKEW_US, DEMO_STORY
from obshub.digest.skew import SkewEstimator
from obshub.events import format_ts, normalize, parse_ts
from obshub.query.search import user_timeline
from obshub.store import open_store
from obshub.store.base import Store
from tests.factories import event, now_us
from tests.hubproc import LiveHub, make_project
from tests.web.conftest import DemoServe, demo_journey, login_client, true_switches

S = 1_000_000
SKEW_US = {"fast": 3 * S, "slow": -3 * S, "ok": 0}  # host clock - true time


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
            est.observe(host, t + i * S + off, t + i * S + delay)
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
    data = user_timeline(store, pid, "u1", offsets_of=est.offsets)

    reqs = data["requests"]
    assert [r["request_id"] for r in reqs] == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert [r["hosts"][0] for r in reqs] == ["fast", "fast", "slow", "ok", "ok", "fast"]
    assert [(r["host_switch"], r["previous_host"]) for r in reqs] == [
        (False, None), (False, "fast"), (True, "fast"), (True, "slow"), (False, "ok"), (True, "ok")]
    assert data["host_switches"] == 3
    assert data["skew_ms"] == {h: est.offset_us(h) // 1000 for h in SKEW_US}
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
        ("r1", "slow"), ("r3", "slow"), ("r5", "slow"), ("r2", "fast"), ("r4", "ok"), ("r6", "fast")]
    assert user_timeline(store, pid, "nobody", offsets_of=est.offsets) == {
        "user_id": "nobody", "requests": [], "events": [], "host_switches": 0, "truncated": False, "skew_ms": {}}


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
    hub, web = web_hub_no_skew
    r = web.get("/users/u-plain")
    assert r.status_code == 200
    assert "raw and corrected time are the same" in r.text and "Start (UTC)" in r.text


@pytest.fixture
def web_hub_no_skew(sqlite_hub: LiveHub) -> Iterator[tuple[LiveHub, httpx.Client]]:
    t = now_us() - 60 * S
    assert sqlite_hub.ingest([event(request_id="rp", user_id="u-plain", ts=t)]).status_code == 200
    with login_client(sqlite_hub) as c:
        yield sqlite_hub, c

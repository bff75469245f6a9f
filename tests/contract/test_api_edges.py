"""Inputs the schemathesis run (tests/test_fuzz_api.py) found mishandled, one test each, on
both stores: every one failed before its fix."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.factories import event
from tests.hubproc import LiveHub
from tests.web.conftest import login_client


def test_ids_with_a_line_break_have_a_trace_and_a_timeline(hub: LiveHub) -> None:
    """Starlette's `path` parameter is `.*`, which stops at a line break: such an id was a 404
    (plain text) for the trace and the timeline, although ingest stores it as sent."""
    rid, uid = "req\n1", "user\r\n7\n"
    assert hub.ingest([event(id="nl1", request_id=rid, user_id=uid, message="hi")]).json()["accepted"] == 1
    r = hub.get(f"/api/v1/trace/{quote(rid, safe='')}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == rid and [e["id"] for e in r.json()["events"]] == ["nl1"]
    r = hub.get(f"/api/v1/users/{quote(uid, safe='')}/timeline")
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == uid and [e["id"] for e in r.json()["events"]] == ["nl1"]


def test_ids_with_a_line_break_have_web_pages(hub: LiveHub) -> None:
    """The same for the web UI's trace and user pages (same route parameter)."""
    rid, uid = "req\n2", "user\n8"
    assert hub.ingest([event(id="nl2", request_id=rid, user_id=uid, message="hello there")]).json()["accepted"] == 1
    with login_client(hub) as web:
        r = web.get(f"/trace/{quote(rid, safe='')}")
        assert r.status_code == 200 and "hello there" in r.text, r.status_code
        r = web.get(f"/users/{quote(uid, safe='')}")
        assert r.status_code == 200 and 'href="/trace/req%0A2"' in r.text, r.status_code  # its request


def test_a_query_word_holding_a_nul_character_is_searched_not_a_store_outage(hub: LiveHub) -> None:
    """SQLite's FTS5 read `"a<NUL>b"` as an unterminated string: the search answered 503 `store
    unavailable` and the hub logged an outage. NUL separates words like any other punctuation."""
    assert (
        hub.ingest([event(id="nul1", message="x\x00y hello"), event(id="nul2", message="y x")]).json()["accepted"] == 2
    )
    for q, expected in (("x\x00y", ["nul1"]), ('"x\x00y hello"', ["nul1"]), ("\x00hel*", ["nul1"]), ("\x00", [])):
        r = hub.get("/api/v1/search", q=q)
        assert r.status_code == 200, (q, r.text)
        assert [e["id"] for e in r.json()["events"]] == expected, q


def test_a_sentry_stacktrace_whose_frames_are_not_a_list_is_stored_without_frames(hub: LiveHub) -> None:
    """`"frames": true` (or a number) was iterated: a TypeError and a 500 for the SDK's event."""
    for i, frames in enumerate((True, 5, 1.5)):
        ev = {
            "event_id": f"{i}" * 32,
            "exception": {"values": [{"type": "ValueError", "value": "bad", "stacktrace": {"frames": frames}}]},
        }
        r = httpx.post(
            f"{hub.url}/api/{hub.project_id}/store/",
            json=ev,
            headers={"X-Sentry-Auth": f"Sentry sentry_key={hub.ingest_token}"},
        )
        assert r.status_code == 200, (frames, r.status_code, r.text)
    stored = hub.search_all("ValueError")
    assert len(stored) == 3 and all(e["error"]["stack"] == [] for e in stored)


def test_an_analytics_property_holding_nul_is_a_400_naming_it(hub: LiveHub) -> None:
    """SQLite cannot take NUL inside SQL text or a JSON path: `property=a<NUL>b` was a 503 `store
    unavailable` there (and answered on OpenSearch). Both stores refuse it like a quote."""
    assert hub.ingest([event(kind="event", name="signup", attrs={"plan": "pro"})]).json()["accepted"] == 1
    r = hub.get("/api/v1/analytics/values", event="signup", property="pl\x00an")
    assert r.status_code == 400 and r.json() == {"error": "property: NUL is not allowed in a property name"}
    r = hub.get("/api/v1/analytics/values", event="sign\x00up", property="plan")  # a name is a bound value
    assert r.status_code == 200 and r.json()["values"] == []

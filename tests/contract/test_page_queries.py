"""What the web pages read through obshub/query (they run no store queries of their own), the
same on both stores: the lines around an event, the live tail's polls, the errors list's
sparklines and a group's chart and tags."""

from __future__ import annotations

from obshub.query.context import context
from obshub.query.errors import activity, get_group, list_groups, merge_groups, sparks
from obshub.query.search import facets, parse_query
from obshub.query.tail import BACKFILL, Tail
from tests.contract.test_errors_api import err, groups
from tests.factories import event, now_us
from tests.hubproc import LiveHub

HOUR = 3_600_000_000


def test_context_is_the_lines_around_an_event_on_its_host_request_or_session(hub: LiveHub) -> None:
    t = now_us() - 60_000_000
    hub.ingest(
        [
            event(id=f"c-{i}", ts=t + i, host="web-1" if i % 2 == 0 else "web-2", request_id="cr-1" if i < 3 else None)
            for i in range(9)
        ]
    )
    store, pid = hub.store, hub.project_id
    around = context(store, pid, "c-4", "host", 2)  # web-1 holds c-0, c-2, c-4, c-6, c-8
    assert [e["id"] for e in around["events"]] == ["c-0", "c-2", "c-4", "c-6", "c-8"]
    assert around["anchor"]["id"] == "c-4" and around["why"] is None and around["value"] == "web-1"
    assert [e["id"] for e in context(store, pid, "c-4", "host", 1)["events"]] == ["c-2", "c-4", "c-6"]
    request = context(store, pid, "c-1", "request", 20)
    assert [e["id"] for e in request["events"]] == ["c-0", "c-1", "c-2"] and request["truncated"] is False
    no_request = context(store, pid, "c-5", "request", 20)
    assert no_request["events"] == [] and "this event has no request_id" in no_request["why"]
    assert "no session_id" in context(store, pid, "c-5", "session", 20)["why"]
    missing = context(store, pid, "nope", "host", 20)
    assert missing["anchor"] is None and "no event with id 'nope'" in missing["why"]


def test_facets_are_the_search_sidebar(hub: LiveHub) -> None:
    t = now_us() - 60_000_000
    hub.ingest([event(ts=t + i, service="fac", level="error" if i < 2 else "info") for i in range(5)])
    found = facets(hub.store, hub.project_id, parse_query("service:fac"), t - HOUR, None, ("level", "service"), 8)
    assert found == {
        "facets": {"level": [("info", 3), ("error", 2)], "service": [("fac", 5)]},
        "counted": 5,
        "approximate": False,
    }


def test_tail_polls_return_each_line_once_and_resume_from_since(hub: LiveHub) -> None:
    t = now_us()
    store, pid, q = hub.store, hub.project_id, parse_query("service:tailq")
    hub.ingest(
        [event(id=f"old-{i:02d}", ts=t - 30 * 60_000_000 + i, service="tailq") for i in range(BACKFILL + 5)]
        + [event(id="other", ts=t - 1000, service="elsewhere")]
    )
    tail = Tail(store, pid, q, None)
    lines, newest = tail.poll(now_us())
    # A new tail shows the newest BACKFILL lines of the past hour, oldest first.
    assert [e["id"] for e in lines] == [f"old-{i:02d}" for i in range(5, BACKFILL + 5)]
    assert newest == t - 30 * 60_000_000 + BACKFILL + 4
    assert tail.poll(now_us()) == ([], None)  # nothing new (the backfill is older than the lookback)
    hub.ingest(
        [
            event(id="new-1", ts=now_us() - 90_000_000, service="tailq"),  # late, within the 2 min lookback
            event(id="new-2", ts=now_us(), service="tailq"),
        ]
    )
    lines, newest = tail.poll(now_us())
    assert [e["id"] for e in lines] == ["new-1", "new-2"] and lines[1]["service"] == "tailq"
    assert tail.poll(now_us()) == ([], None)  # each line once
    # A reconnecting tail (Last-Event-ID: the ts of the newest line it had) reads from there,
    # inclusive, with no backfill.
    resumed = Tail(store, pid, q, t - 30 * 60_000_000 + BACKFILL + 2)
    assert [e["id"] for e in resumed.poll(now_us())[0]] == [
        f"old-{BACKFILL + 2}",
        f"old-{BACKFILL + 3}",
        f"old-{BACKFILL + 4}",
        "new-1",
        "new-2",
    ]


def test_sparks_and_activity_fold_merged_groups(hub: LiveHub) -> None:
    t = now_us()
    hub.ingest(
        [
            err("a", "'1'", ts=t - 2 * HOUR, host="web-1", user_id="u1"),
            err("a", "'2'", ts=t - 1000, host="web-2", user_id="u1"),
            err("b", "'3'", ts=t - 1000, host="web-2", release="r9"),
        ]
    )
    store, pid = hub.store, hub.project_id
    ids = {g["culprit"]: g["id"] for g in groups(hub)}
    ga, gb = ids["shop.web in a"], ids["shop.web in b"]
    listed = list_groups(store, pid, None, None, t - HOUR * 24, None)["groups"]
    spark = sparks(store, pid, listed, t)
    assert spark[ga][-1] == 1 and spark[ga][-3] == 1 and sum(spark[ga]) == 2 and len(spark[ga]) == 24
    assert sum(spark[gb]) == 1 and spark[gb][-1] == 1
    merge_groups(store, pid, ga, {"groups": [gb]})
    listed = list_groups(store, pid, None, None, t - HOUR * 24, None)["groups"]
    assert [g["id"] for g in listed] == [ga] and sum(sparks(store, pid, listed, t)[ga]) == 3
    seen = activity(store, pid, get_group(store, pid, ga), t)
    assert seen["hours"] == 24 and len(seen["points"]) == 24 and sum(p["count"] for p in seen["points"]) == 3
    assert seen["tags"] == {
        "host": [("web-2", 2), ("web-1", 1)],
        "service": [("api", 3)],
        "release": [("r9", 1)],
        "user_id": [("u1", 2)],
    }

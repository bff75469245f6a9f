"""Error group lifecycle over the API on every backend: states, regression, merge, filters."""

from __future__ import annotations

import time
from typing import Any

import pytest

from obshub.digest import Scrubber
from obshub.events import normalize
from obshub.ingest import pipeline
from tests.factories import event, now_us
from tests.hubproc import LiveHub


def err(where: str, value: str, **kw: Any) -> dict[str, Any]:
    return event(
        kind="error",
        error={
            "type": "KeyError",
            "value": value,
            "stack": [{"module": "shop.web", "function": where, "lineno": 10, "in_app": True}],
        },
        **kw,
    )


def groups(h: LiveHub, **params: str) -> list[dict[str, Any]]:
    r = h.get("/api/v1/errors", **params)
    assert r.status_code == 200, r.text
    return list(r.json()["groups"])


def test_group_fields_counts_users_hosts(hub: LiveHub) -> None:
    hub.ingest(
        [
            err("checkout", "'a'", user_id="u1", host="web-1", request_id="r1"),
            err("checkout", "'b'", user_id="u2", host="web-2", request_id="r2"),
            err("checkout", "'c'", user_id="u1", host="web-2", request_id="r3", level="critical"),
            err("summary", "'a'", user_id="u3", host="web-3"),
        ]
    )
    gs = groups(hub)
    assert len(gs) == 2
    g = next(x for x in gs if x["culprit"] == "shop.web in checkout")
    assert set(g) >= {
        "id",
        "title",
        "type",
        "culprit",
        "count",
        "users",
        "hosts",
        "first_seen",
        "last_seen",
        "state",
        "level",
    }
    assert (g["count"], g["users"], g["hosts"], g["state"], g["type"]) == (
        3,
        2,
        ["web-1", "web-2"],
        "unresolved",
        "KeyError",
    )
    assert g["first_seen"] <= g["last_seen"] and g["is_new"]
    detail = hub.get(f"/api/v1/errors/{g['id']}").json()
    assert detail["latest_event"]["kind"] == "error"
    assert {o["request_id"] for o in detail["occurrences"]} == {"r1", "r2", "r3"}
    # q filters occurrences: groups that user u3 hit
    assert [x["culprit"] for x in groups(hub, q="user_id:u3")] == ["shop.web in summary"]
    assert groups(hub, q="host:web-9") == []
    # occurrences are searchable by group id
    assert len(hub.search_all(f"group_id:{g['id']}")) == 3


def test_resolve_regress_ignore(hub: LiveHub) -> None:
    assert hub.ingest([err("pay", "'x'")]).status_code == 200
    (g,) = groups(hub)
    r = hub.patch(f"/api/v1/errors/{g['id']}", json={"state": "resolved"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    assert groups(hub, state="resolved")[0]["id"] == g["id"]
    assert groups(hub, state="unresolved") == []
    time.sleep(0.01)
    assert hub.ingest([err("pay", "'y'")]).status_code == 200  # the bug is back
    (back,) = groups(hub, state="unresolved")
    assert back["id"] == g["id"] and back["regressed"] and back["count"] == 2
    hub.patch(f"/api/v1/errors/{g['id']}", json={"state": "ignored"})
    assert hub.ingest([err("pay", "'z'")]).status_code == 200
    assert groups(hub, state="ignored")[0]["count"] == 3  # ignored stays ignored


def test_replayed_occurrence_does_not_regress(hub: LiveHub) -> None:
    first = err("pay", "'x'")
    hub.ingest([first])
    (g,) = groups(hub)
    hub.patch(f"/api/v1/errors/{g['id']}", json={"state": "resolved"})
    assert hub.ingest([first]).json()["duplicates"] == 1  # an agent retry of an old batch
    assert groups(hub)[0]["state"] == "resolved"


def test_merge(hub: LiveHub) -> None:
    hub.ingest([err("a", "'1'", user_id="u1"), err("b", "'2'", user_id="u2"), err("b", "'3'", user_id="u2")])
    ga, gb = sorted(groups(hub), key=lambda g: g["culprit"])
    with hub.client(hub.read_token) as c:
        r = c.post(f"/api/v1/errors/{ga['id']}/merge", json={"groups": [gb["id"]]})
        assert r.status_code == 200, r.text
        assert r.json()["count"] == 3 and r.json()["merged"] == [gb["id"]]
        (only,) = groups(hub)
        assert only["id"] == ga["id"] and only["users"] == 2
        hub.ingest([err("b", "'4'")])  # new occurrences of the merged fingerprint follow the merge
        assert groups(hub)[0]["count"] == 4
        assert c.get(f"/api/v1/errors/{gb['id']}").json()["id"] == ga["id"]


def test_bad_requests(hub: LiveHub) -> None:
    hub.ingest([err("a", "'1'")])
    (g,) = groups(hub)
    with hub.client(hub.read_token) as c:
        assert c.patch(f"/api/v1/errors/{g['id']}", json={"state": "done"}).status_code == 400
        assert c.patch(f"/api/v1/errors/{g['id']}", content=b"{").status_code == 400
        assert c.get("/api/v1/errors/nope").status_code == 404
        assert c.patch("/api/v1/errors/nope", json={"state": "resolved"}).status_code == 404
        assert c.get("/api/v1/errors", params={"state": "open"}).status_code == 400
        assert c.post(f"/api/v1/errors/{g['id']}/merge", json={}).status_code == 400
    assert hub.get("/api/v1/errors", token=hub.ingest_token).status_code == 403


def test_state_all_lists_every_state(hub: LiveHub) -> None:
    hub.ingest([err("a", "'1'"), err("b", "'2'"), err("c", "'3'")])
    ga, gb, gc = sorted(groups(hub), key=lambda g: g["culprit"])
    hub.patch(f"/api/v1/errors/{gb['id']}", json={"state": "resolved"})
    hub.patch(f"/api/v1/errors/{gc['id']}", json={"state": "ignored"})
    every = groups(hub, state="all")
    assert sorted((g["id"], g["state"]) for g in every) == sorted(
        [(ga["id"], "unresolved"), (gb["id"], "resolved"), (gc["id"], "ignored")]
    )
    assert every == groups(hub)  # the same as no state at all
    assert [g["id"] for g in groups(hub, state="all", q="shop.web")] == [g["id"] for g in groups(hub, q="shop.web")]
    r = hub.get("/api/v1/errors", state="open")
    assert r.status_code == 400 and r.json()["error"] == "state: expected one of unresolved, resolved, ignored or all"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/errors", {"limit": "many"}),
        ("/api/v1/errors", {"state": "open"}),
        ("/api/v1/errors", {"from": "yesterday"}),
        ("/api/v1/search", {"limit": "0"}),
        ("/api/v1/search", {"order": "sideways"}),
        ("/api/v1/search", {"cursor": "garbage!"}),
        ("/api/v1/analytics/series", {"unique": "2"}),
        ("/api/v1/analytics/series", {"interval": "fortnight"}),
    ],
)
def test_validation_errors_carry_no_column(hub: LiveHub, path: str, params: dict[str, str]) -> None:
    r = hub.get(path, **params)
    assert r.status_code == 400
    assert list(r.json()) == ["error"], r.json()  # `column` only where a position in `q` applies


@pytest.mark.parametrize("path", ["/api/v1/errors", "/api/v1/search", "/api/v1/export"])
def test_query_syntax_errors_keep_their_column(hub: LiveHub, path: str) -> None:
    r = hub.get(path, q="host:web-1 (level:error")
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"error", "column"} and body["column"] == 12


def test_a_batch_of_duplicates_creates_no_group(hub: LiveHub) -> None:
    """Events stored before without a group (stored undigested, as `serve --demo` once did, or
    under another grouping) and sent again: all duplicates, so no group appears, not even an
    empty one."""
    evs = [err("checkout", "'cart'", user_id="u1"), err("checkout", "'cart'", user_id="u2")]
    received = now_us()
    hub.store.write_events(hub.project_id, [normalize(e, received) for e in evs])
    r = hub.ingest(evs)
    assert r.status_code == 200 and (r.json()["accepted"], r.json()["duplicates"]) == (0, 2)
    assert groups(hub) == []
    fresh = err("checkout", "'cart'", user_id="u3")  # a new occurrence of that bug: now its group exists
    assert hub.ingest([*evs, fresh]).json()["accepted"] == 1
    (g,) = groups(hub)
    assert (g["count"], g["users"]) == (1, 1)  # the occurrences stored without the group are not in it
    assert hub.ingest([*evs, fresh]).json()["duplicates"] == 3
    assert groups(hub) == [g]


def test_a_retry_after_the_groups_were_lost_records_them(hub: LiveHub) -> None:
    """A write that stored the occurrences and failed before their groups (the client saw an
    error): the client's retry finds them stored, and the groups they carry are created."""
    evs = [err("pay", "'x'", user_id="u1"), err("pay", "'y'", user_id="u2")]
    batch = pipeline.prepare(evs, now_us(), Scrubber())
    hub.store.write_events(hub.project_id, batch.events)  # stored, with group_id, but no group record
    assert groups(hub) == []
    assert hub.ingest(evs).json()["duplicates"] == 2
    (g,) = groups(hub)
    assert (g["id"], g["count"], g["users"]) == (next(iter(batch.groups)), 2, 2)


def test_merge_with_an_unknown_id_merges_nothing(hub: LiveHub) -> None:
    hub.ingest([err("a", "'1'"), err("b", "'2'"), err("c", "'3'")])
    ga, gb, gc = sorted(groups(hub), key=lambda g: g["culprit"])
    with hub.client(hub.read_token) as c:
        r = c.post(f"/api/v1/errors/{ga['id']}/merge", json={"groups": [gb["id"], "nope", gc["id"], "gone"]})
        assert r.status_code == 404
        assert sorted(g["id"] for g in groups(hub)) == sorted([ga["id"], gb["id"], gc["id"]])  # none merged
        assert all(g["merged"] == [] for g in groups(hub))
        assert r.json() == {"error": "no error groups 'nope', 'gone'"}
        r = c.post(f"/api/v1/errors/{ga['id']}/merge", json={"groups": ["nope"]})
        assert r.status_code == 404 and r.json() == {"error": "no error group 'nope'"}
        r = c.post("/api/v1/errors/nope/merge", json={"groups": [gb["id"]]})  # unknown target: as before
        assert r.status_code == 404 and r.json() == {"error": "no error group 'nope'"}
        assert c.post(f"/api/v1/errors/{ga['id']}/merge", json={"groups": [gb["id"], gc["id"]]}).status_code == 200
    (only,) = groups(hub)
    assert only["id"] == ga["id"] and sorted(only["merged"]) == sorted([gb["id"], gc["id"]])

"""Token scopes and cross-project isolation (docs/security.md)."""

from __future__ import annotations

import httpx

from tests.factories import event
from tests.hubproc import LiveHub


def test_missing_and_unknown_tokens_are_401(hub: LiveHub) -> None:
    with httpx.Client(base_url=hub.url) as c:
        assert c.post("/api/v1/ingest", content=b"{}").status_code == 401
        r = c.get("/api/v1/search")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        bad = {"Authorization": "Bearer obi_nope"}
        assert c.post("/api/v1/ingest", content=b"{}", headers=bad).status_code == 401
        assert c.get("/api/v1/search", headers={"Authorization": "Basic abc"}).status_code == 401


def test_scopes_are_enforced(hub: LiveHub) -> None:
    assert hub.ingest([event()], token=hub.read_token).status_code == 403
    r = hub.get("/api/v1/search", token=hub.ingest_token)
    assert r.status_code == 403 and "read token" in r.json()["error"]
    for path in ("/api/v1/trace/x", "/api/v1/users/u/timeline", "/api/v1/analytics/events"):
        assert hub.get(path, token=hub.ingest_token).status_code == 403


def test_projects_are_isolated(hub: LiveHub) -> None:
    other = hub.new_project("other")
    mine = event(message="secret of project test", request_id="shared-rid", user_id="u1")
    theirs = event(message="secret of project other", request_id="shared-rid", user_id="u1")
    assert hub.ingest([mine]).json()["accepted"] == 1
    assert hub.ingest([theirs], token=other["ingest_token"]).json()["accepted"] == 1
    # Each read token sees only its own project, on every read endpoint.
    assert [e["message"] for e in hub.search_all()] == ["secret of project test"]
    r = hub.get("/api/v1/trace/shared-rid", token=other["read_token"]).json()
    assert [e["message"] for e in r["events"]] == ["secret of project other"]
    r = hub.get("/api/v1/users/u1/timeline", token=other["read_token"]).json()
    assert [e["message"] for e in r["events"]] == ["secret of project other"]
    # Same event id in two projects: two events, not a duplicate.
    same = event(message="same id")
    assert hub.ingest([same]).json()["accepted"] == 1
    assert hub.ingest([same], token=other["ingest_token"]).json()["accepted"] == 1

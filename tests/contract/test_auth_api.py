"""Token scopes and cross-project isolation (docs/security.md)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import event
from tests.hubproc import HubProcess, LiveHub
from tests.test_cli import obshub


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


@pytest.fixture
def short_cache_hub(store_url: str, tmp_path: Path) -> Iterator[HubProcess]:
    """`obshub serve` as a process, with a 1 s token cache, over a fresh store of each backend."""
    h = HubProcess(store_url, env={"OBSHUB_TOKEN_CACHE_S": "1"}, log_path=tmp_path / "hub.log").start()
    yield h
    h.stop()


def _lines(r: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert r.returncode == 0, r.stderr
    return [json.loads(ln) for ln in r.stdout.splitlines()]


def test_tokens_are_listed_created_and_revoked_with_the_cli(short_cache_hub: HubProcess) -> None:
    """`obshub token` against the store of a running hub (docs/security.md): a revoked token is
    refused once the hub's token cache (token_cache_s, 1 s here) has expired."""
    h = short_cache_hub
    env = {"OBSHUB_STORE": h.store_url, "OBSHUB_TOKEN_CACHE_S": "1"}  # the hub's settings, as an operator has them

    made = obshub("token", "create", "--project", "test", "--scope", "read", "--label", "ci job", env=env)
    read = _lines(made)[0]
    assert read["token"].startswith("obr_") and "dsn" not in read and "shown only this once" in made.stderr
    assert read["id"] == hashlib.sha256(read["token"].encode()).hexdigest()[:12]
    ingest = _lines(obshub("token", "create", "--project", "test", "--scope", "ingest", "--label", "agents", env=env))[
        0
    ]
    assert "dsn" not in ingest  # a DSN carries a sentry key (tests/security/test_tokens.py)

    listed = _lines(obshub("token", "list", "--project", "test", env=env))
    assert sorted((t["scope"], t["label"], t["revoked_at"]) for t in listed) == [
        ("ingest", "agents", None),
        ("ingest", "created with the project", None),
        ("read", "ci job", None),
        ("read", "created with the project", None),
        ("sentry", "Sentry key of the DSN", None),
    ]
    assert {t["project"] for t in listed} == {"test"} and read["id"] in {t["id"] for t in listed}
    everything = obshub("token", "list", env=env).stdout
    sentry_key = str(h.creds["dsn"]).split("//")[1].split("@")[0]
    for secret in (read["token"], ingest["token"], h.read_token, h.ingest_token, sentry_key):
        assert secret not in everything

    # Both new tokens work; the new ingest token also works on the Sentry routes.
    assert h.get("/api/v1/search", token=read["token"]).status_code == 200
    assert h.ingest([event()], token=ingest["token"]).status_code == 200
    envelope = b'{}\n{"type":"event"}\n{"message":"via the new DSN"}'
    sentry = f"{h.url}/api/{h.project_id}/envelope/?sentry_key={ingest['token']}"
    assert httpx.post(sentry, content=envelope).status_code == 200
    with httpx.Client(base_url=h.url, timeout=30) as web:
        assert web.post("/login", data={"token": read["token"]}, headers={"Origin": h.url}).status_code == 303
        assert web.get("/search").status_code == 200
        session = web.cookies

    r = obshub("token", "revoke", read["id"], env=env)
    revoked = _lines(r)[0]
    assert revoked["id"] == read["id"] and revoked["revoked_at"] is not None
    assert "every hub refuses it within token_cache_s (1 s)" in r.stderr and "warning" not in r.stderr
    r = obshub("token", "revoke", ingest["token"], env=env)  # by the token itself
    assert r.returncode == 0 and f"ingest token {ingest['id']} (agents)" in r.stderr
    time.sleep(1.3)  # past token_cache_s: the hub asks the store again
    refused = h.get("/api/v1/search", token=read["token"])
    assert refused.status_code == 401 and refused.json()["error"] == "unknown or revoked token"
    assert h.ingest([event()], token=ingest["token"]).status_code == 401
    assert httpx.post(sentry, content=envelope).status_code == 401
    with httpx.Client(base_url=h.url, timeout=30, cookies=session) as web:  # its web session has ended
        assert web.get("/search").headers["location"] == "/login?next=%2Fsearch"
    assert h.get("/api/v1/search").status_code == 200  # the project's other tokens are untouched
    assert h.ingest([event()]).status_code == 200

    again = obshub("token", "revoke", read["id"], env=env)
    assert again.returncode == 0 and "was already revoked" in again.stderr
    assert _lines(again)[0] == revoked  # the first revoked_at is kept
    listed = {t["id"]: t for t in _lines(obshub("token", "list", "--project", "test", env=env))}
    assert listed[read["id"]] == revoked
    assert listed[ingest["id"]]["revoked_at"] is not None

    # The tokens `project create` made are revocable too; the last of a scope warns.
    first_read = hashlib.sha256(h.read_token.encode()).hexdigest()[:12]
    last = obshub("token", "revoke", first_read, env=env)
    assert last.returncode == 0 and "warning: project 'test' has no read token left" in last.stderr, last.stderr
    dsn_key = obshub("token", "revoke", sentry_key, env=env)
    assert dsn_key.returncode == 0 and "this was the key of project 'test''s DSN" in dsn_key.stderr
    assert "warning: project 'test' has no sentry token left" in dsn_key.stderr
    time.sleep(1.3)
    assert h.get("/api/v1/search").status_code == 401

    # Failure paths: exit 1 or 2 with the reason, nothing changed.
    unknown = obshub("token", "revoke", "0123456789ab", env=env)
    assert unknown.returncode == 1 and "no token with the id 0123456789ab" in unknown.stderr
    assert (
        obshub("token", "revoke", "obr_not-a-token", env=env).stderr
        == "obshub: no such token (see `obshub token list`)\n"
    )
    nope = obshub("token", "create", "--project", "nope", "--scope", "read", env=env)
    assert nope.returncode == 1 and "no project 'nope'" in nope.stderr
    scope = obshub("token", "create", "--project", "test", "--scope", "owner", env=env)
    assert scope.returncode == 2 and "--scope: invalid choice" in scope.stderr
    label = obshub("token", "create", "--project", "test", "--scope", "read", "--label", "a\nb", env=env)
    assert label.returncode == 2 and "--label" in label.stderr
    assert len(_lines(obshub("token", "list", env=env))) == 5

"""Token scopes (issue 23): the DSN key is a `sentry` token, good on the Sentry routes only (it
ships inside browser and mobile apps); defining uptime checks takes an `admin` token. Both
stores, real hubs, the real CLI."""

from __future__ import annotations

import json
import secrets
import subprocess
from typing import Any

import httpx
import pytest

from obshub.auth import PROJECT_LABEL, SENTRY_LABEL, hash_token, new_token
from obshub.store import open_store
from tests.factories import event
from tests.hubproc import LiveHub
from tests.test_cli import obshub

ENVELOPE = b'{}\n{"type":"event"}\n{"message":"from a browser"}'
# A check target that is never connected to: a name, so POST takes it, that resolves to loopback,
# which the hub's default network policy refuses at probe time (tests/security/test_ssrf.py).
NOWHERE = "http://localhost:9/"


def envelope(h: LiveHub, **kw: Any) -> httpx.Response:
    return httpx.post(f"{h.url}/api/{h.project_id}/envelope/", content=ENVELOPE, timeout=30, **kw)


def _json(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def test_the_dsn_key_is_refused_on_native_ingest_and_works_on_the_sentry_routes(hub: LiveHub) -> None:
    key = hub.sentry_key
    r = hub.ingest([event(message="as an agent")], token=key)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "this is a sentry token; this endpoint needs an ingest token"
    # Every form a Sentry SDK sends the key in.
    assert envelope(hub, headers={"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"}).status_code == 200
    assert envelope(hub, params={"sentry_key": key}).status_code == 200
    assert envelope(hub, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    store = httpx.post(
        f"{hub.url}/api/{hub.project_id}/store/", params={"sentry_key": key}, content=b'{"message":"x"}', timeout=30
    )
    assert store.status_code == 200, store.text
    # Ingest tokens (agents) keep working on both; the key reads nothing.
    assert envelope(hub, params={"sentry_key": hub.ingest_token}).status_code == 200
    assert hub.ingest([event()]).status_code == 200
    r = hub.get("/api/v1/search", token=key)
    assert r.status_code == 403 and r.json()["error"] == "this is a sentry token; this endpoint needs a read token"
    r = envelope(hub, params={"sentry_key": hub.read_token})
    assert r.status_code == 403
    assert r.json()["detail"] == "this is a read token; this endpoint needs a sentry or ingest token"
    assert len(hub.search_all("from a browser")) == 4 and hub.search_all("as an agent") == []


def test_a_store_made_before_the_sentry_scope_is_narrowed_at_open(store_url: str) -> None:
    """A DSN key stored with scope ingest (with the label, or none: a store older than labels)
    becomes a sentry token when a hub opens the store; other ingest tokens stay ingest."""
    store = open_store(store_url)
    store.open()
    keys, ingest = {}, new_token("ingest")
    try:
        for name, label in (("test", SENTRY_LABEL), ("old", "")):
            keys[name] = secrets.token_hex(16)  # as `project create` made it
            store.create_project(
                name,
                keys[name],
                [
                    ("ingest", hash_token(ingest if name == "test" else new_token("ingest")), PROJECT_LABEL),
                    ("ingest", hash_token(keys[name]), label),
                ],
            )
        assert {t.scope for t in store.list_tokens()} == {"ingest"}
    finally:
        store.close()
    h = LiveHub(store_url, project="fresh").start()
    try:
        scopes = {t.hash: t.scope for t in h.store.list_tokens()}
        assert scopes[hash_token(keys["test"])] == scopes[hash_token(keys["old"])] == "sentry"
        assert scopes[hash_token(ingest)] == "ingest"
        for name in ("test", "old"):
            project = h.store.get_project(name)
            assert project is not None
            r = httpx.post(f"{h.url}/api/v1/ingest", content=b"{}", headers={"Authorization": f"Bearer {keys[name]}"})
            assert r.status_code == 403 and "sentry token" in r.json()["error"]
            url = f"{h.url}/api/{project.id}/envelope/"
            assert httpx.post(url, params={"sentry_key": keys[name]}, content=ENVELOPE).status_code == 200
        assert (
            httpx.post(
                f"{h.url}/api/v1/ingest", content=b"{}", headers={"Authorization": f"Bearer {ingest}"}
            ).status_code
            == 200
        )
    finally:
        h.stop()
    # Opening again changes nothing (the narrowing is done once, whoever opens first).
    store = open_store(store_url)
    store.open()
    try:
        assert {t.hash: t.scope for t in store.list_tokens()} == scopes
    finally:
        store.close()


def test_sentry_and_admin_tokens_from_the_cli(hub: LiveHub) -> None:
    env = {"OBSHUB_STORE": hub.store_url, "OBSHUB_PUBLIC_URL": hub.url}
    made = _json(obshub("token", "create", "--project", "test", "--scope", "sentry", "--label", "web app", env=env))
    key = made["token"]
    assert made["scope"] == "sentry" and made["dsn"] == f"{hub.url.replace('//', f'//{key}@')}/{hub.project_id}"
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)  # Sentry's form: JS SDKs parse \w+
    assert envelope(hub, params={"sentry_key": key}).status_code == 200
    assert hub.ingest([event()], token=key).status_code == 403
    ingest = _json(obshub("token", "create", "--project", "test", "--scope", "ingest", env=env))
    assert "dsn" not in ingest  # an ingest token is not for DSNs (which ship to browsers)

    admin = _json(obshub("token", "create", "--project", "test", "--scope", "admin", "--label", "checks", env=env))
    assert admin["token"].startswith("oba_") and "dsn" not in admin
    with hub.client(admin["token"]) as c:
        r = c.post("/api/v1/checks", json={"name": "home", "target": NOWHERE})
        assert r.status_code == 201, r.text
        assert c.get("/api/v1/checks").status_code == 403  # reading takes a read token
        assert c.get("/api/v1/search").status_code == 403
    with httpx.Client(base_url=hub.url, timeout=30) as web:  # nor does it log in to the web UI
        r = web.post("/login", data={"token": admin["token"]}, headers={"Origin": hub.url})
        assert r.status_code != 303

    listed = [json.loads(ln) for ln in obshub("token", "list", "--project", "test", env=env).stdout.splitlines()]
    assert sorted((t["scope"], t["label"]) for t in listed) == [
        ("admin", "checks"),
        ("ingest", ""),
        ("ingest", PROJECT_LABEL),
        ("read", PROJECT_LABEL),
        ("sentry", SENTRY_LABEL),
        ("sentry", "web app"),
    ]
    r = obshub("token", "revoke", made["id"], env=env)
    assert r.returncode == 0 and f"sentry token {made['id']} (web app)" in r.stderr
    r = obshub("token", "revoke", hub.sentry_key, env=env)
    assert "this was the key of project 'test''s DSN" in r.stderr and "--scope sentry" in r.stderr
    assert "warning: project 'test' has no sentry token left" in r.stderr
    hub.app.state.hub.tokens.ttl = 0  # past token_cache_s: ask the store
    assert envelope(hub, params={"sentry_key": key}).status_code == 401


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_defining_checks_takes_an_admin_token(hub: LiveHub, method: str) -> None:
    """A read token logs in to the web UI and is handed to dashboards and CI jobs: it reads
    checks, but only an admin token makes the hub connect somewhere."""
    definition = {"name": "home", "target": NOWHERE}
    url = "/api/v1/checks" if method == "POST" else "/api/v1/checks/home"
    kw: dict[str, Any] = {"json": {**definition, "interval_s": 300}} if method == "POST" else {}
    with hub.client(hub.read_token) as c:  # before the check exists: nothing to create with it
        assert c.request(method, url, **kw).status_code == 403
    assert hub.get("/api/v1/checks").json()["checks"] == []
    # (the store takes the token as `token create --scope admin` stores it)
    admin = "oba_" + secrets.token_urlsafe(24)
    hub.store.add_token(hub.project_id, "admin", hash_token(admin), "tests")
    with hub.client(admin) as c:
        assert c.post("/api/v1/checks", json=definition).status_code == 201
    for token, scope in ((hub.read_token, "read"), (hub.ingest_token, "ingest"), (hub.sentry_key, "sentry")):
        with hub.client(token) as c:
            r = c.request(method, url, **kw)
        assert r.status_code == 403, (scope, r.text)
        assert (
            r.json()["error"]
            == f"this is {'an' if scope == 'ingest' else 'a'} {scope} token; this endpoint needs an admin token"
        )
    got = hub.get("/api/v1/checks").json()["checks"]  # a read token reads
    assert [(c["name"], c["interval_s"]) for c in got] == [("home", 60)]  # nothing changed
    hub.new_project("other")
    other_admin = "oba_" + secrets.token_urlsafe(24)
    project = hub.store.get_project("other")
    assert project is not None
    hub.store.add_token(project.id, "admin", hash_token(other_admin), "tests")
    with hub.client(other_admin) as c:  # another project's admin token changes its own project only
        assert c.delete("/api/v1/checks/home").status_code == 404
    assert [c["name"] for c in hub.get("/api/v1/checks").json()["checks"]] == ["home"]

"""`/api/v1/checks` on a live hub over every store backend: definitions, results written by the
real scheduler and by `record`, uptime percentages, search, metrics."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from obshub.ingest import pipeline
from obshub.uptime.config import parse_check
from obshub.uptime.model import ProbeResult
from obshub.uptime.scheduling import Uptime, run_all
from obshub.uptime.writes import record, write_definition
from tests.factories import now_us
from tests.hubproc import HubProcess, LiveHub, free_port
from tests.uptime.conftest import LOOPBACK

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US


def post(h: LiveHub | HubProcess, body: Any, token: str | None = None) -> Any:
    with h.client(token or h.admin_token) as c:
        return c.post("/api/v1/checks", json=body)


def delete(h: LiveHub | HubProcess, name: str) -> Any:
    with h.client(h.admin_token) as c:
        return c.delete(f"/api/v1/checks/{name}")


def listed(h: LiveHub | HubProcess) -> dict[str, dict[str, Any]]:
    r = h.get("/api/v1/checks")
    assert r.status_code == 200, r.text
    return {c["name"]: c for c in r.json()["checks"]}


def wait_for(h: LiveHub | HubProcess, q: str, n: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = h.search_all(q)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": "http://x"}, "name"),
        ({"name": "a", "target": "gopher://x"}, "target"),
        ({"name": "a", "target": "http://x", "interval_s": 1}, "interval_s"),
        ({"name": "a", "target": "http://x", "timeout_s": "5"}, "timeout_s"),
        ({"name": "a", "target": "http://x", "expect_status": 1000}, "expect_status"),
        ({"name": "a", "target": "http://x", "expect_body": 5}, "expect_body"),
        ({"name": "a", "target": "http://x", "project": "other"}, "project"),
        ({"name": "a", "target": "http://x", "extra": 1}, "extra"),
        ("just a string", "body"),
    ],
)
def test_post_validation(sqlite_hub: LiveHub, body: Any, field: str) -> None:
    r = post(sqlite_hub, body)
    assert r.status_code == 400
    assert r.json()["error"].startswith(f"{field}: ")


def test_post_auth_and_bad_json(sqlite_hub: LiveHub) -> None:
    assert post(sqlite_hub, {"name": "a", "target": "http://x"}, token=sqlite_hub.ingest_token).status_code == 403
    assert post(sqlite_hub, {"name": "a", "target": "http://x"}, token=sqlite_hub.read_token).status_code == 403
    assert post(sqlite_hub, {"name": "a", "target": "http://x"}, token="nope").status_code == 401
    with sqlite_hub.client(sqlite_hub.admin_token) as c:
        r = c.post("/api/v1/checks", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"].startswith("body: ")
    assert sqlite_hub.get("/api/v1/checks", token=sqlite_hub.ingest_token).status_code == 403


def test_define_replace_delete(hub: LiveHub, closed_port: int) -> None:
    target = f"http://127.0.0.1:{closed_port}/health"
    r = post(hub, {"name": "api", "target": target, "interval_s": 3600})
    assert r.status_code == 201, r.text
    assert r.json()["up"] is None and r.json()["source"] == "api"
    r = post(
        hub, {"name": "api", "target": target, "interval_s": 600, "expect_body": "ok", "expect_status": [200, 204]}
    )
    assert r.status_code == 200
    got = listed(hub)["api"]
    assert (got["interval_s"], got["expect_body"], got["timeout_s"]) == (600, "ok", 10.0)
    assert got["expect_status"] == [200, 204]
    assert set(got) >= {"name", "target", "up", "last_checked", "latency_ms", "uptime_24h", "uptime_7d", "uptime_30d"}

    assert delete(hub, "api").json() == {"deleted": "api"}
    assert "api" not in listed(hub)
    assert delete(hub, "api").status_code == 404
    # History stays searchable: two definitions and the tombstone.
    assert len(hub.search_all("kind:check name:api attrs.definition:true")) == 3
    assert post(hub, {"name": "api", "target": target, "interval_s": 600}).status_code == 201


def test_ingested_lookalike_definitions_are_ignored(hub: LiveHub, closed_port: int) -> None:
    """An ingest token (on every monitored host) must not make the hub probe a URL."""
    forged = {
        "id": f"checkdef:{hub.project_id}:evil:1",
        "kind": "check",
        "name": "evil",
        "attrs": {
            "definition": True,
            "deleted": False,
            "target": f"http://127.0.0.1:{closed_port}/",
            "interval_s": 60,
            "timeout_s": 10,
        },
    }
    # Refused at ingest (the id prefix and kind are the hub's), and ignored were it stored.
    answer = hub.ingest([forged]).json()
    assert answer["accepted"] == 0 and answer["rejected"][0]["error"].startswith("id: ids starting with 'checkdef:'")
    assert "evil" not in listed(hub)


def test_uptime_percentages_with_the_real_scheduler(hub: LiveHub, closed_port: int) -> None:
    """A known mix of stored results plus the one the hub's own scheduler adds."""
    target = f"http://127.0.0.1:{closed_port}/"  # refused: the scheduler's probe is down
    assert post(hub, {"name": "shop", "target": target, "interval_s": 86_400}).status_code == 201
    check = parse_check({"name": "shop", "target": target, "interval_s": 86_400}, "api", "test")
    now = now_us()
    current = check.slot(now / 1e6)
    mix = [
        (-1, True),
        (-2, True),
        (-3, False),
        (-3 * 24, False),
        (-10 * 24, True),
        (-20 * 24, True),
        (-40 * 24, False),
    ]  # (hours ago, up); the last is outside every window
    for i, (hours, up) in enumerate(mix):
        result = ProbeResult(up, "synthetic", 12.5 if up else None, 200 if up else None)
        assert record(hub.store, hub.project_id, check, current - 1 - i, result, now + hours * HOUR_US)

    scheduled = wait_for(hub, f"kind:check name:shop id:check:{hub.project_id}:shop:{current}")
    assert len(scheduled) == 1, "the scheduler did not probe the new check"
    ev = scheduled[0]
    assert ev["level"] == "error" and ev["service"] == "obshub-uptime" and ev["attrs"]["up"] is False
    assert "latency_ms" not in ev["attrs"]

    got = listed(hub)["shop"]
    assert got["up"] is False and got["latency_ms"] is None and got["status"] is None
    assert got["last_checked"] == ev["ts"]
    assert got["message"].startswith(f"GET {target}: ConnectError")
    assert got["uptime_24h"] == 50.0  # 2 up of 4 (3 synthetic + the scheduler's)
    assert got["uptime_7d"] == 40.0  # + 3 days ago, down
    assert got["uptime_30d"] == round(400 / 7, 3)  # + 10 and 20 days ago, up

    # Results are ordinary events.
    assert len(hub.search_all("kind:check name:shop level:error", **{"from": "-30d"})) == 3
    assert len(hub.search_all("kind:check attrs.up:true")) == 4
    assert len(hub.search_all("kind:check attrs.up:false")) == 4  # definitions have no attrs.up
    assert 'obshub_check_up{check="shop",project="test"} 0.0' in hub.get("/metrics").text


def test_the_hub_taking_a_change_acts_on_it_at_once(hub: LiveHub, web: str) -> None:
    """Definitions are cached for minutes (uptime/scheduling.py: reading them often keeps OpenSearch's
    shards from going search-idle), but the hub that takes a POST or DELETE drops its cache."""
    assert post(hub, {"name": "first", "target": f"{web}/ok", "interval_s": 86_400}).status_code == 201
    assert wait_for(hub, "kind:check name:first attrs.up:true"), "first check never probed"  # cache now read
    assert post(hub, {"name": "second", "target": f"{web}/ok", "interval_s": 86_400}).status_code == 201
    assert wait_for(hub, "kind:check name:second attrs.up:true"), "a check posted later waited for the cache"
    assert delete(hub, "second").status_code == 200
    runner = hub.app.state.hub.uptime
    deadline = time.monotonic() + 10
    while "second" in {c.name for _, c in runner.checks()}:  # what the scheduler itself will probe
        assert time.monotonic() < deadline, "a deleted check is still probed"
        time.sleep(0.2)


def test_a_slot_is_stored_once_across_replicas(hub: LiveHub, web: str) -> None:
    """Two runners (two hub replicas) probing the same slot: both probe, the store keeps one."""
    assert post(hub, {"name": "web", "target": f"{web}/ok", "interval_s": 86_400}).status_code == 201
    replicas = [Uptime(hub.app.state.hub, max_parallel=2) for _ in range(2)]
    try:
        t = time.time() + 86_400  # the next slot: the hub's own scheduler has not reached it
        stored = [ok for r in replicas for ok in run_all(r, t)]
    finally:
        for r in replicas:
            r.close()
    assert sorted(stored) == [False, True]
    slot = parse_check({"name": "web", "target": web, "interval_s": 86_400}, "api", "test").slot(t)
    assert len(hub.search_all(f"id:check:{hub.project_id}:web:{slot}")) == 1
    got = listed(hub)["web"]
    assert got["up"] is True and got["status"] == 200 and got["latency_ms"] > 0


def test_config_file_checks(tmp_path: Path, web: str, listener: int) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        f'[[checks]]\nname = "home"\ntarget = "{web}/ok"\nexpect_body = "nominal"\nproject = "test"\n\n'
        f'[[checks]]\nname = "db"\ntarget = "tcp://127.0.0.1:{listener}"\ninterval_s = 5\n'
        f'project = "test"\n\n'
        f'[[checks]]\nname = "elsewhere"\ntarget = "{web}/ok"\nproject = "other"\n'
    )
    env = {"OBSHUB_CONFIG": str(cfg), "OBSHUB_CHECKS_ALLOW_NETWORKS": LOOPBACK}  # (for the POST below)
    h = HubProcess(f"sqlite:///{tmp_path}/obshub.db", env=env).start()
    try:
        assert len(wait_for(h, "kind:check attrs.up:true", 2)) == 2
        got = listed(h)
        assert set(got) == {"home", "db"}  # "elsewhere" belongs to another project
        assert got["home"]["source"] == "config" and got["home"]["up"] is True
        assert got["db"]["up"] is True and got["db"]["uptime_24h"] == 100.0
        r = post(h, {"name": "home", "target": f"{web}/fail"})
        assert r.status_code == 409 and "config file" in r.json()["error"]
        assert delete(h, "db").status_code == 409
    finally:
        h.stop()


def test_bad_config_check_stops_the_hub(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text('[[checks]]\nname = "home"\ntarget = "http://x/"\ninterval_s = 1\n')
    log = tmp_path / "hub.log"
    h = HubProcess(f"sqlite:///{tmp_path}/obshub.db", env={"OBSHUB_CONFIG": str(cfg)}, log_path=log)
    with pytest.raises(RuntimeError, match="hub exited"):
        h.start()
    assert "[[checks]] #1 ('home'): interval_s: expected an integer from 5 to 86400, got 1" in log.read_text()


def test_definitions_outlive_retention(tmp_path: Path, closed_port: int) -> None:
    """Retention deletes by age: a definition a third of retention_days old is stored again."""
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", retention_days=3, checks_allow_networks=LOOPBACK).start()
    try:
        check = parse_check({"name": "old", "target": f"http://127.0.0.1:{closed_port}/"}, "api", "test")
        write_definition(h.store, h.project_id, "old", check, now_us() - 2 * DAY_US)
        runner = Uptime(h.app.state.hub)
        try:
            assert [c.name for _, c in runner.checks(force=True)] == ["old"]
            assert [c.name for _, c in runner.checks(force=True)] == ["old"]  # refreshed once, not twice
        finally:
            runner.close()
        defs = h.search_all("kind:check name:old attrs.definition:true")
        assert len(defs) == 2
        h.store.delete_before(now_us() - DAY_US)  # what the retention job does after 1 more day
        assert "old" in listed(h)
    finally:
        h.stop()


def test_a_down_check_is_one_error_per_outage_and_no_error_group(hub: LiveHub) -> None:
    """A failing check stored at level:error at every probe floods every error search: `error`
    when it goes down, `warning` while it stays down, `info` when up; never an error group."""
    port = free_port()  # nothing listens yet: down
    assert post(hub, {"name": "db", "target": f"tcp://127.0.0.1:{port}", "interval_s": 86_400}).status_code == 201
    first = wait_for(hub, "kind:check name:db attrs.up:false")  # the hub's own scheduler, this slot
    assert len(first) == 1 and first[0]["level"] == "error", first
    runner = Uptime(hub.app.state.hub)  # another replica, fresh: it reads the last state once
    t = time.time() + 86_400
    try:
        for up in (False, False, False, True, True, False, False):
            with socket.socket() as s:
                if up:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", port))
                    s.listen(4)
                assert run_all(runner, t) == [True]
            t += 86_400
    finally:
        runner.close()
    results = sorted(hub.search_all("kind:check name:db attrs.up:*"), key=lambda e: e["attrs"]["slot"])
    assert [(e["attrs"]["up"], e["level"]) for e in results] == [
        (False, "error"),
        (False, "warning"),
        (False, "warning"),
        (False, "warning"),
        (True, "info"),
        (True, "info"),
        (False, "error"),
        (False, "warning"),
    ]
    assert [e["attrs"]["changed"] for e in results] == [True, False, False, False, True, False, True, False]
    assert len(hub.search_all("kind:check name:db level:error")) == 2  # one per outage
    assert hub.search_all("kind:error") == []
    assert hub.get("/api/v1/errors").json()["groups"] == []
    assert listed(hub)["db"]["up"] is False and listed(hub)["db"]["uptime_24h"] == 25.0


CARD_TEXT = "test card 4111 1111 1111 1111"  # a payment sandbox page; a card number to the scrubber


def test_definitions_are_scrubbed_by_the_hubs_settings(tmp_path: Path, closed_port: int) -> None:
    """A definition is stored with the hub's scrubber like every event: `scrub = false` keeps
    what the user wrote (a default scrubber masked it: the check then looked for `[Filtered]`)."""
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", scrub=False, checks_allow_networks=LOOPBACK).start()
    try:
        body = {"name": "pay", "target": f"http://127.0.0.1:{closed_port}/", "expect_body": CARD_TEXT}
        assert post(h, body).json()["expect_body"] == CARD_TEXT
        assert listed(h)["pay"]["expect_body"] == CARD_TEXT
        assert h.search_all("kind:check attrs.definition:true")[0]["attrs"]["expect_body"] == CARD_TEXT
        assert delete(h, "pay").status_code == 200  # the tombstone goes the same way
        assert "pay" not in listed(h)
    finally:
        h.stop()


@pytest.mark.parametrize(
    ("settings", "body", "field"),
    [
        ({}, {"expect_body": CARD_TEXT}, "expect_body"),  # masked: the check looked for `[Filtered]`
        ({"scrub_keys": "target"}, {}, "target"),  # filtered: a definition the hub could not read back
        ({"scrub_keys": "interval"}, {"interval_s": 30}, "interval_s"),
    ],
)
def test_a_definition_the_scrubber_would_change_is_refused(
    tmp_path: Path, closed_port: int, settings: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    """Stored through the hub's scrubber, such a definition was silently not listed or probed
    (or probed for `[Filtered]`): now a 400 naming the field, and nothing is stored."""
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", checks_allow_networks=LOOPBACK, **settings).start()
    try:
        r = post(h, {"name": "pay", "target": f"http://127.0.0.1:{closed_port}/", **body})
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith(f"{field}: the hub's scrubbing"), r.text
        assert "pay" not in listed(h)
        assert h.search_all("kind:check attrs.definition:true") == []
        if not settings:  # default scrubbing refuses only what it would change
            assert post(h, {"name": "ok", "target": f"http://127.0.0.1:{closed_port}/"}).status_code == 201
    finally:
        h.stop()


def test_a_definition_refreshed_for_retention_keeps_the_hubs_scrubbing(tmp_path: Path, closed_port: int) -> None:
    h = LiveHub(
        f"sqlite:///{tmp_path}/obshub.db", scrub=False, retention_days=3, checks_allow_networks=LOOPBACK
    ).start()
    try:
        hub = h.app.state.hub
        old = now_us() - 2 * DAY_US  # a third of retention_days old: re-stored at the next read
        definition = {
            "id": f"checkdef:{h.project_id}:pay:{old}",
            "ts": old,
            "kind": "check",
            "name": "pay",
            "service": "obshub-uptime",
            "attrs": {
                "definition": True,
                "deleted": False,
                "name": "pay",
                "target": f"http://127.0.0.1:{closed_port}/",
                "interval_s": 60,
                "timeout_s": 10.0,
                "expect_body": CARD_TEXT,
            },
        }
        assert pipeline.store_events(h.store, h.project_id, [definition], 0, hub.scrubber).accepted == 1
        runner = Uptime(hub)
        try:
            assert [c.expect_body for _, c in runner.checks(force=True)] == [CARD_TEXT]
        finally:
            runner.close()
        assert len(h.search_all("kind:check name:pay attrs.definition:true")) == 2  # refreshed
        assert listed(h)["pay"]["expect_body"] == CARD_TEXT
    finally:
        h.stop()

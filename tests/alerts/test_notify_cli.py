"""`obshub alerts test RULE`: a test notification through the rule's notifiers, as a user runs
it (a subprocess with OBSHUB_CONFIG), against a real receiver; secrets are not printed."""

from __future__ import annotations

from pathlib import Path

from tests.alerts.receiver import Receiver
from tests.hubproc import free_port
from tests.test_cli import obshub


def config(tmp_path: Path, receiver: Receiver, down: str) -> dict[str, str]:
    path = tmp_path / "hub.toml"
    path.write_text(
        f"""
[[notifiers]]
name = "hook"
type = "webhook"
url = "{receiver.url}/hook/s3cretpath"

[[notifiers]]
name = "chat"
type = "slack"
url = "{down}/services/T/B/xoxsecret"

[[notifiers]]
name = "unused"
type = "webhook"
url = "{receiver.url}/unused"

[[alerts]]
name = "checkout-errors"
project = "shop"
kind = "error"
when = "new"
labels = {{ severity = "page", team = "payments" }}
notify = ["hook", "chat"]

[[alerts]]
name = "everyone"
kind = "error"
when = "regression"
"""
    )
    return {"OBSHUB_CONFIG": str(path)}


def test_alerts_test_sends_through_the_rules_notifiers(tmp_path: Path, receiver: Receiver) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    env = config(tmp_path, receiver, down)
    r = obshub("alerts", "test", "checkout-errors", env=env)
    assert r.returncode == 1, r.stderr  # the Slack one is down
    lines = r.stdout.splitlines()
    assert lines[0] == f"hook (webhook -> {receiver.url}/***): ok: delivered"
    assert lines[1].startswith(f"chat (slack -> {down}/***): FAILED: {down}/***: ConnectError")
    assert "s3cretpath" not in r.stdout + r.stderr and "xoxsecret" not in r.stdout + r.stderr
    [body] = receiver.bodies()
    assert body["status"] == "firing" and body["receiver"] == "hook"
    assert body["alerts"][0]["labels"] == {
        "alertname": "checkout-errors",
        "project": "shop",
        "severity": "page",
        "team": "payments",
        "test": "true",
    }

    every = obshub("alerts", "test", "everyone", env=env)  # no `notify`: every notifier
    assert every.returncode == 1 and len(every.stdout.splitlines()) == 3
    assert sorted(p.path for p in receiver.posted) == ["/hook/s3cretpath", "/hook/s3cretpath", "/unused"]


def test_alerts_test_errors(tmp_path: Path, receiver: Receiver) -> None:
    env = config(tmp_path, receiver, "http://127.0.0.1:9")
    nowhere = f"sqlite:///{tmp_path}/none.db"
    r = obshub("alerts", "test", "nope", "--store", nowhere, env=env)
    assert r.returncode == 2 and "no [[alerts]] rule named 'nope' in the config file, and no store at" in r.stderr
    r = obshub("alerts", "test", "checkout-errors", "--project", "other", "--store", nowhere, env=env)
    assert r.returncode == 2 and "no [[alerts]] rule named 'checkout-errors'" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[notifiers]]\nname = "x"\ntype = "slack"\n\n[[alerts]]\nname = "r"\n')
    r = obshub("alerts", "test", "r", env={"OBSHUB_CONFIG": str(bad)})
    assert r.returncode == 2 and "[[notifiers]] #1 ('x'): url: required" in r.stderr
    assert obshub("alerts", "test", "--help").returncode == 0
    assert receiver.posted == []


def test_alerts_test_finds_api_rules_in_the_store(tmp_path: Path, receiver: Receiver) -> None:
    """A rule created over the API (not in the config file) is looked up in the hub's store."""
    from tests.hubproc import LiveHub

    env = config(tmp_path, receiver, "http://127.0.0.1:9")
    cfg = Path(env["OBSHUB_CONFIG"])
    store = f"sqlite:///{tmp_path}/obshub.db"
    hub = LiveHub(store, config=cfg).start()
    try:
        body = {"name": "api-rule", "kind": "absence", "query": "service:billing", "notify": ["unused"]}
        with hub.client(hub.read_token) as c:
            assert c.post("/api/v1/alerts", json=body).status_code == 201
            r = c.post("/api/v1/alerts", json={**body, "name": "bad", "notify": ["nobody"]})
        assert r.status_code == 400 and "notify: no notifier named 'nobody'" in r.json()["error"]
    finally:
        hub.stop()
    r = obshub("alerts", "test", "api-rule", "--store", store, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"unused (webhook -> {receiver.url}/***): ok: delivered")
    [posted] = receiver.posted
    assert posted.path == "/unused" and posted.body["alerts"][0]["labels"]["alertname"] == "api-rule"
    r = obshub("alerts", "test", "nope", "--store", store, env=env)
    assert r.returncode == 2 and "neither an [[alerts]] rule nor an API rule" in r.stderr

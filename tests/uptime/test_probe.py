"""Probes against real local targets, and check definitions (no store needed). The probes get no
network policy (`None`: as the operator's own `[[checks]]`); tests/security/test_ssrf.py probes
with one."""

from __future__ import annotations

import time
from typing import Any

import pytest

from obshub.errors import ConfigError, FieldError
from obshub.settings import load_settings
from obshub.uptime.config import config_checks, parse_check
from obshub.uptime.model import Check, public_target
from obshub.uptime.probes import probe


def check(target: str, **kw: Any) -> Check:
    return parse_check({"name": "t", "target": target, **kw})


def test_http_up(web: str) -> None:
    r = probe(check(f"{web}/ok"), None)
    assert r.up and r.status == 200
    assert r.latency_ms is not None and 0 < r.latency_ms < 2000
    assert r.message.startswith(f"GET {web}/ok 200 in ")


def test_http_error_status_is_down(web: str) -> None:
    r = probe(check(f"{web}/fail"), None)
    assert not r.up and r.status == 503 and r.latency_ms is not None
    assert r.message.startswith(f"GET {web}/fail 503 in ")


def test_redirect_is_up_and_not_followed(web: str) -> None:
    r = probe(check(f"{web}/redirect"), None)
    assert r.up and r.status == 302


def test_expect_status(web: str) -> None:
    assert probe(check(f"{web}/created", expect_status=201), None).up
    assert probe(check(f"{web}/fail", expect_status=[500, 503]), None).up  # a maintenance page expected
    r = probe(check(f"{web}/ok", expect_status=201), None)
    assert not r.up and r.status == 200
    assert r.message.endswith(": expected status 201")


def test_expect_body(web: str) -> None:
    assert probe(check(f"{web}/ok", expect_body="nominal"), None).up
    r = probe(check(f"{web}/ok", expect_body="degraded"), None)
    assert not r.up and r.status == 200
    assert r.message.endswith("body does not contain 'degraded'")


def test_timeout(web: str) -> None:
    started = time.monotonic()
    r = probe(check(f"{web}/slow", timeout_s=0.3), None)
    assert time.monotonic() - started < 1.2
    assert not r.up and r.latency_ms is None and r.status is None
    assert "timed out after 0.3 s" in r.message


def test_connection_refused(closed_port: int) -> None:
    r = probe(check(f"http://127.0.0.1:{closed_port}/"), None)
    assert not r.up and r.latency_ms is None and r.status is None
    assert r.message.startswith(f"GET http://127.0.0.1:{closed_port}/: ConnectError")


def test_tcp(listener: int, closed_port: int) -> None:
    r = probe(check(f"tcp://127.0.0.1:{listener}"), None)
    assert r.up and r.latency_ms is not None and r.status is None
    assert r.message.startswith(f"connect 127.0.0.1:{listener} in ")
    down = probe(check(f"tcp://127.0.0.1:{closed_port}"), None)
    assert not down.up and down.latency_ms is None
    assert down.message.startswith(f"connect 127.0.0.1:{closed_port}: ")


def test_password_is_masked(web: str) -> None:
    target = web.replace("http://", "http://probe:s3cret@") + "/ok"
    assert public_target(target) == web.replace("http://", "http://probe:***@") + "/ok"
    r = probe(check(target), None)
    assert r.up and "s3cret" not in r.message and "probe:***@" in r.message


def test_defaults() -> None:
    c = parse_check({"name": "api-health", "target": "https://example.com/health"})
    assert (c.interval_s, c.timeout_s, c.expect_status, c.expect_body, c.project) == (60, 10.0, (), None, "default")
    assert parse_check({"name": "x", "target": "tcp://db:5432", "interval_s": 5}).timeout_s == 5.0


def test_slots_are_the_same_on_every_replica() -> None:
    c = parse_check({"name": "api-health", "target": "https://example.com/", "interval_s": 60})
    assert 0 <= c.offset_s < 60
    t = 1_800_000_000
    assert c.slot(t) == c.slot(t + 59.999 - (t - c.offset_s) % 60)
    assert c.slot(c.slot_start(c.slot(t)) + 60) == c.slot(t) + 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"target": "http://x"}, "name"),
        ({"name": "has space", "target": "http://x"}, "name"),
        ({"name": "x" * 65, "target": "http://x"}, "name"),
        ({"name": "a"}, "target"),
        ({"name": "a", "target": "ftp://x"}, "target"),
        ({"name": "a", "target": "http://"}, "target"),
        ({"name": "a", "target": "http://x:99999/"}, "target"),
        ({"name": "a", "target": "tcp://db"}, "target"),
        ({"name": "a", "target": "http://x", "interval_s": 4}, "interval_s"),
        ({"name": "a", "target": "http://x", "interval_s": "60"}, "interval_s"),
        ({"name": "a", "target": "http://x", "interval_s": 7.5}, "interval_s"),
        ({"name": "a", "target": "http://x", "interval_s": True}, "interval_s"),
        ({"name": "a", "target": "http://x", "timeout_s": 0}, "timeout_s"),
        ({"name": "a", "target": "http://x", "interval_s": 10, "timeout_s": 11}, "timeout_s"),
        ({"name": "a", "target": "http://x", "expect_status": 700}, "expect_status"),
        ({"name": "a", "target": "http://x", "expect_status": "200"}, "expect_status"),
        ({"name": "a", "target": "http://x", "expect_status": []}, "expect_status"),
        ({"name": "a", "target": "tcp://db:5432", "expect_status": 200}, "expect_status"),
        ({"name": "a", "target": "http://x", "expect_body": ""}, "expect_body"),
        ({"name": "a", "target": "tcp://db:5432", "expect_body": "ok"}, "expect_body"),
        ({"name": "a", "target": "http://x", "project": 3}, "project"),
        ({"name": "a", "target": "http://x", "method": "POST"}, "method"),
    ],
)
def test_invalid_definitions_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(FieldError) as e:
        parse_check(body)
    assert e.value.field == field
    assert str(e.value).startswith(f"{field}: ")


def test_config_file_checks(tmp_path: Any) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        'retention_days = 7\n\n[[checks]]\nname = "api"\ntarget = "https://api.example.com/health"\n'
        'expect_status = 200\n\n[[checks]]\nname = "db"\ntarget = "tcp://db:5432"\ninterval_s = 30\n'
        'project = "shop"\n'
    )
    checks = config_checks(load_settings({"OBSHUB_CONFIG": str(cfg)}).checks)
    assert [(c.name, c.project, c.interval_s, c.expect_status) for c in checks] == [
        ("api", "default", 60, (200,)),
        ("db", "shop", 30, ()),
    ]

    cfg.write_text('[[checks]]\nname = "api"\ntarget = "https://x/"\n\n[[checks]]\nname = "db"\ntarget = "tcp://db"\n')
    with pytest.raises(ConfigError, match=r"\[\[checks\]\] #2 \('db'\): target: a TCP check is tcp://host:port"):
        config_checks(load_settings({"OBSHUB_CONFIG": str(cfg)}).checks)
    cfg.write_text(
        '[[checks]]\nname = "api"\ntarget = "https://x/"\n\n[[checks]]\nname = "api"\ntarget = "https://y/"\n'
    )
    with pytest.raises(ConfigError, match="declared twice"):
        config_checks(load_settings({"OBSHUB_CONFIG": str(cfg)}).checks)

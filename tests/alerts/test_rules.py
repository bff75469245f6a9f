"""Rule definitions: [[alerts]] tables stop the hub naming the table and key; API bodies get a
FieldError naming the field; durations, measures and queries are read once, here."""

from __future__ import annotations

from typing import Any

import pytest

from obshub.alerts.rules import config_rules, parse_duration, parse_rule
from obshub.errors import ConfigError, FieldError


def test_durations() -> None:
    assert parse_duration("30s", "w") == 30
    assert parse_duration("5m", "w") == 300
    assert parse_duration("1h30m", "w") == 5400
    assert parse_duration(90, "w") == 90
    for bad in ("", "5", "5 minutes", "m5", True, None, "-5m", "1e9d"):
        with pytest.raises(FieldError, match=r"^w: "):
            parse_duration(bad, "w")


def test_every_kind_parses_with_defaults() -> None:
    r = parse_rule({"name": "a", "kind": "threshold", "query": "service:api  level:error", "threshold": 5})
    assert (r.query, r.measure, r.window_s, r.op, r.for_s, r.project) == (
        "service:api level:error",
        "count",
        300,
        ">",
        0,
        "default",
    )
    r = parse_rule({"name": "p", "kind": "threshold", "measure": "p95(attrs.latency_ms)", "threshold": 1, "for": "2m"})
    assert (r.measure, r.attr, r.for_s) == ("p95", "latency_ms", 120)
    r = parse_rule({"name": "c", "kind": "check"})
    assert (r.when, r.failures, r.successes, r.check) == ("down", 2, 1, "")
    r = parse_rule({"name": "t", "kind": "check", "when": "tls_expiry", "check": "shop"})
    assert r.days == 14
    r = parse_rule({"name": "n", "kind": "absence", "query": "host:web-3"})
    assert r.window_s == 600
    r = parse_rule(
        {"name": "f", "kind": "error", "when": "frequency", "threshold": 10, "measure": "users", "group": "abc"}
    )
    assert (r.measure, r.group, r.window_s) == ("users", "abc", 300)
    r = parse_rule(
        {
            "name": "x",
            "kind": "error",
            "when": "new",
            "labels": {"severity": "page"},
            "notify": ["am"],
            "group_wait": "10s",
            "repeat_interval": "1h",
            "send_resolved": False,
        }
    )
    route = r.route(123)
    assert (route.notifiers, route.group_wait_s, route.repeat_interval_s, route.send_resolved, route.muted_until) == (
        ("am",),
        10,
        3600,
        False,
        123,
    )
    assert r.labels_for("default", "g1") == {
        "alertname": "x",
        "project": "default",
        "severity": "page",
        "group_id": "g1",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"name": "a"}, "kind"),
        ({"name": "a b", "kind": "absence", "query": "x"}, "name"),
        ({"name": "a", "kind": "absence"}, "query"),
        ({"name": "a", "kind": "absence", "query": "(unclosed"}, "query"),
        ({"name": "a", "kind": "absence", "query": "level:loud"}, "query"),
        ({"name": "a", "kind": "absence", "query": "x", "threshold": 3}, "threshold"),  # not a key of absence
        ({"name": "a", "kind": "threshold", "query": "x"}, "threshold"),
        ({"name": "a", "kind": "threshold", "threshold": "5"}, "threshold"),
        ({"name": "a", "kind": "threshold", "threshold": 5, "measure": "median(attrs.x)"}, "measure"),
        ({"name": "a", "kind": "threshold", "threshold": 5, "op": ">="}, "op"),
        ({"name": "a", "kind": "threshold", "threshold": 5, "window": "1s"}, "window"),
        ({"name": "a", "kind": "threshold", "threshold": 5, "for": "2 days"}, "for"),
        ({"name": "a", "kind": "error", "when": "often"}, "when"),
        ({"name": "a", "kind": "error", "when": "frequency"}, "threshold"),
        ({"name": "a", "kind": "error", "when": "new", "threshold": 3}, "threshold"),
        ({"name": "a", "kind": "check", "failures": 0}, "failures"),
        ({"name": "a", "kind": "check", "when": "tls_expiry", "failures": 2}, "failures"),
        ({"name": "a", "kind": "check", "when": "tls_expiry", "days": 0}, "days"),
        ({"name": "a", "kind": "absence", "query": "x", "labels": {"alertname": "b"}}, "labels.alertname"),
        ({"name": "a", "kind": "absence", "query": "x", "labels": {"1x": "b"}}, "labels.1x"),
        ({"name": "a", "kind": "absence", "query": "x", "labels": {"team": 3}}, "labels.team"),
        ({"name": "a", "kind": "absence", "query": "x", "labels": {f"l{i}": "v" for i in range(21)}}, "labels"),
        ({"name": "a", "kind": "absence", "query": "x", "annotation": "x" * 5000}, "annotation"),
        ({"name": "a", "kind": "absence", "query": "x", "notify": "am"}, "notify"),
        ({"name": "a", "kind": "absence", "query": "x", "send_resolved": "yes"}, "send_resolved"),
        ({"name": "a", "kind": "absence", "query": "x", "repeat_interval": "1s"}, "repeat_interval"),
    ],
)
def test_bad_definitions_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(FieldError) as e:
        parse_rule(body)
    assert e.value.field == field


def test_api_rules_belong_to_the_tokens_project() -> None:
    assert parse_rule({"name": "a", "kind": "absence", "query": "x"}, "api", "shop").project == "shop"
    with pytest.raises(FieldError, match=r"^project: "):
        parse_rule({"name": "a", "kind": "absence", "query": "x", "project": "other"}, "api", "shop")


def test_config_errors_name_the_table_and_key() -> None:
    with pytest.raises(ConfigError, match=r"\[\[alerts\]\] #2 \('b'\): window: "):
        config_rules(
            [
                {"name": "a", "kind": "absence", "query": "x"},
                {"name": "b", "kind": "absence", "query": "x", "window": "soon"},
            ]
        )
    with pytest.raises(ConfigError, match=r"#2 \('a'\): name: 'a' is declared twice"):
        config_rules([{"name": "a", "kind": "absence", "query": "x"}, {"name": "a", "kind": "absence", "query": "y"}])
    assert (
        len(
            config_rules(
                [
                    {"name": "a", "kind": "absence", "query": "x"},
                    {"name": "a", "project": "p2", "kind": "absence", "query": "x"},
                ]
            )
        )
        == 2
    )

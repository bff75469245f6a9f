"""[[notifiers]] tables: every bad value is a ConfigError naming the table and the key, and a
secret never shows in a repr, a str, a target or an error."""

from __future__ import annotations

from typing import Any

import pytest

from obshub.alerts.notify.config import (
    AlertmanagerNotifier,
    EmailNotifier,
    Secret,
    SlackNotifier,
    WebhookNotifier,
    mask_url,
    parse_notifiers,
)
from obshub.errors import ConfigError
from obshub.settings import load_settings

SLACK = "https://hooks.slack.com/services/T000/B000/s3cr3tT0ken"


def test_every_type_parses() -> None:
    got = parse_notifiers(
        [
            {"name": "am", "type": "alertmanager", "urls": ["http://127.0.0.1:9093/", "http://u:pw@am2:9093"]},
            {
                "name": "hook",
                "type": "webhook",
                "url": "https://x.example/h?key=abc",
                "headers": {"Authorization": "Bearer t0k"},
            },
            {"name": "chat", "type": "slack", "url": SLACK, "timeout_s": 3},
            {
                "name": "mail",
                "type": "email",
                "smtp_host": "smtp.example.com",
                "smtp_user": "alerts",
                "smtp_password": "pa55word",
                "from": "obshub@example.com",
                "to": ["ops@example.com", "dev@example.com"],
            },
        ]
    )
    assert list(got) == ["am", "hook", "chat", "mail"]
    am, hook, chat, mail = got.values()
    assert isinstance(am, AlertmanagerNotifier) and am.urls == ("http://127.0.0.1:9093", "http://u:pw@am2:9093")
    assert am.target == "http://127.0.0.1:9093, http://u:***@am2:9093"
    assert isinstance(hook, WebhookNotifier) and hook.url.reveal() == "https://x.example/h?key=abc"
    assert hook.headers == (("Authorization", Secret("Bearer t0k")),)
    assert isinstance(chat, SlackNotifier) and chat.timeout_s == 3.0 and chat.target == "https://hooks.slack.com/***"
    assert isinstance(mail, EmailNotifier)
    assert (mail.smtp_port, mail.smtp_security, mail.sender) == (587, "starttls", "obshub@example.com")
    assert mail.to == ("ops@example.com", "dev@example.com")
    shown = repr(got) + str(got) + " ".join(n.target for n in got.values())
    for secret in ("s3cr3tT0ken", "key=abc", "Bearer t0k", "pa55word", ":pw@"):
        assert secret not in shown, secret


def test_implicit_tls_defaults_to_port_465() -> None:
    (mail,) = parse_notifiers(
        [{"name": "m", "type": "email", "smtp_host": "h", "smtp_security": "tls", "from": "a@b", "to": "c@d"}]
    ).values()
    assert isinstance(mail, EmailNotifier) and mail.smtp_port == 465 and mail.to == ("c@d",)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"type": "webhook", "url": "http://x"}, "name: required"),
    ({"name": "a b", "type": "webhook", "url": "http://x"}, "name: required"),
    ({"name": "n", "type": "pagerduty"}, "type: expected one of alertmanager, webhook, slack, email"),
    ({"name": "n", "type": "webhook", "url": "http://x", "urls": []}, "urls: unknown key for type 'webhook'"),
    ({"name": "n", "type": "alertmanager"}, "urls: expected a list"),
    ({"name": "n", "type": "alertmanager", "urls": ["ftp://x"]}, "urls: expected an http:// or https:// URL"),
    ({"name": "n", "type": "alertmanager", "urls": ["http://x:99999"]}, "urls: not a valid URL"),
    ({"name": "n", "type": "slack", "url": "hooks.slack.com/services/T/B/sEcReT"}, "url: required"),
    ({"name": "n", "type": "webhook", "url": "http://x", "headers": {"X": 1}}, "headers: expected a table"),
    ({"name": "n", "type": "webhook", "url": "http://x", "headers": {"X": "a\nb"}}, "headers: expected"),
    ({"name": "n", "type": "webhook", "url": "http://x", "max_alerts": -1}, "max_alerts: expected an integer"),
    ({"name": "n", "type": "webhook", "url": "http://x", "timeout_s": 0}, "timeout_s: expected a number"),
    ({"name": "n", "type": "email", "from": "a@b", "to": ["c@d"]}, "smtp_host: expected a non-empty string"),
    ({"name": "n", "type": "email", "smtp_host": "h", "to": ["c@d"]}, "from: expected an email address"),
    ({"name": "n", "type": "email", "smtp_host": "h", "from": "a@b", "to": []}, "to: expected 1-100"),
    ({"name": "n", "type": "email", "smtp_host": "h", "from": "a@b", "to": ["nobody"]}, "to: expected an email"),
    (
        {"name": "n", "type": "email", "smtp_host": "h", "from": "a@b", "to": "c@d", "smtp_security": "ssl"},
        "smtp_security: expected starttls, tls or none",
    ),
    (
        {"name": "n", "type": "email", "smtp_host": "h", "from": "a@b", "to": "c@d", "smtp_port": 0},
        "smtp_port: expected an integer from 1 to 65535",
    ),
    (
        {"name": "n", "type": "email", "smtp_host": "h", "from": "a@b", "to": "c@d", "smtp_user": "u"},
        "smtp_password: smtp_user and smtp_password go together",
    ),
]


@pytest.mark.parametrize(("table", "message"), BAD)
def test_bad_tables_name_the_table_and_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_notifiers([{"name": "ok", "type": "webhook", "url": "http://x"}, table])
    text = str(e.value)
    name = f" ({table['name']!r})" if isinstance(table.get("name"), str) else ""
    assert text.startswith(f"OBSHUB_CONFIG: [[notifiers]] #2{name}: "), text
    assert message in text, text
    assert "sEcReT" not in text


def test_duplicate_names() -> None:
    with pytest.raises(ConfigError, match=r"#2 \('a'\): name: 'a' is declared twice"):
        parse_notifiers([{"name": "a", "type": "slack", "url": SLACK}, {"name": "a", "type": "slack", "url": SLACK}])


def test_from_the_config_file(tmp_path: Any) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        '[[notifiers]]\nname = "am"\ntype = "alertmanager"\nurls = ["http://127.0.0.1:9093"]\n'
        '[[notifiers]]\nname = "chat"\ntype = "slack"\nurl = "' + SLACK + '"\n'
    )
    settings = load_settings({"OBSHUB_CONFIG": str(path)})
    assert list(parse_notifiers(settings.notifiers)) == ["am", "chat"]


def test_mask_url() -> None:
    assert mask_url(SLACK) == "https://hooks.slack.com/***"
    assert mask_url("https://u:p@h.example:8443/") == "https://h.example:8443"
    assert mask_url("http://h?token=x") == "http://h/***"
    assert str(Secret("x")) == "***" and repr(Secret("x")) == "Secret('***')" and f"{Secret('x')}" == "***"

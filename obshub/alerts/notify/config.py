"""`[[notifiers]]` tables of the hub config file -> frozen notifier definitions, or a ConfigError
naming the table and the key. Secrets (webhook and Slack URLs, header values, the SMTP password)
are `Secret`s: their repr and str are masked, so no log line, status or error shows them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from obshub.errors import FieldError
from obshub.settings import parse_tables
from obshub.uptime.model import public_target

__all__ = [
    "TYPES",
    "AlertmanagerNotifier",
    "EmailNotifier",
    "Notifier",
    "Secret",
    "SlackNotifier",
    "WebhookNotifier",
    "mask_url",
    "parse_notifier",
    "parse_notifiers",
]

TYPES = ("alertmanager", "webhook", "slack", "email")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # also a label value and a record key part
_ADDRESS_RE = re.compile(r"[^@\s<>,]+@[^@\s<>,]+")  # an addr-spec, roughly: enough to catch typos
_HEADER_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
DEFAULT_TIMEOUT_S = 10.0  # per delivery attempt; a hung receiver holds only its own notifier's thread
SmtpSecurity = Literal["starttls", "tls", "none"]


class Secret:
    """A string that is never shown: repr/str/format give "***". `reveal()` is the one way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def mask_url(url: str) -> str:
    """What may be shown of a secret URL: scheme and host. A Slack or webhook URL carries its
    credential in the path (hooks.slack.com/services/T…/B…/<token>) or the query."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, "/***" if parts.path not in ("", "/") or parts.query else "", "", ""))


@dataclass(frozen=True)
class _Base:
    name: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    ca_file: str | None = None  # PEM bundle to trust instead of the system's (an internal CA)


@dataclass(frozen=True)
class AlertmanagerNotifier(_Base):
    """Alertmanager's API v2: every firing alert, at every evaluation, to each URL."""

    # Base URLs (…:9093). Not in the repr: one may carry a password (`target` masks it).
    urls: tuple[str, ...] = field(default=(), repr=False)

    type: Literal["alertmanager"] = "alertmanager"

    @property
    def target(self) -> str:
        return ", ".join(public_target(u) for u in self.urls)


@dataclass(frozen=True)
class WebhookNotifier(_Base):
    """A POST of Alertmanager's webhook body (version 4), so receivers written for it work."""

    url: Secret = field(default_factory=lambda: Secret(""))
    headers: tuple[tuple[str, Secret], ...] = ()  # e.g. Authorization
    max_alerts: int = 0  # alerts per body; the rest are counted in truncatedAlerts (0: all)
    type: Literal["webhook"] = "webhook"

    @property
    def target(self) -> str:
        return mask_url(self.url.reveal())


@dataclass(frozen=True)
class SlackNotifier(_Base):
    """A Slack incoming webhook: one readable message per notification."""

    url: Secret = field(default_factory=lambda: Secret(""))
    type: Literal["slack"] = "slack"

    @property
    def target(self) -> str:
        return mask_url(self.url.reveal())


@dataclass(frozen=True)
class EmailNotifier(_Base):
    """Email over SMTP: text and HTML alternatives in one message."""

    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: SmtpSecurity = "starttls"
    smtp_user: str | None = None
    smtp_password: Secret | None = None
    sender: str = ""  # the `from` key
    to: tuple[str, ...] = ()
    type: Literal["email"] = "email"

    @property
    def target(self) -> str:
        return f"smtp://{self.smtp_host}:{self.smtp_port} -> {', '.join(self.to)}"


Notifier = AlertmanagerNotifier | WebhookNotifier | SlackNotifier | EmailNotifier

_COMMON = ("name", "type", "timeout_s", "ca_file")
_KEYS: dict[str, tuple[str, ...]] = {
    "alertmanager": ("urls",),
    "webhook": ("url", "headers", "max_alerts"),
    "slack": ("url",),
    "email": ("smtp_host", "smtp_port", "smtp_security", "smtp_user", "smtp_password", "from", "to"),
}


def _http_url(raw: Any, key: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(key, "expected an http:// or https:// URL")
    url = raw.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as e:
        raise FieldError(key, f"not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FieldError(key, "expected an http:// or https:// URL with a host")
    return url


def _text(raw: Any, key: str, max_len: int = 1024) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > max_len:
        raise FieldError(key, f"expected a non-empty string of at most {max_len} characters")
    return raw.strip()


def _address(raw: Any, key: str) -> str:
    if not isinstance(raw, str) or not _ADDRESS_RE.fullmatch(raw.strip()):
        raise FieldError(key, f"expected an email address (name@domain), got {raw!r}")
    return raw.strip()


def _int(raw: Any, key: str, lo: int, hi: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not lo <= raw <= hi:
        raise FieldError(key, f"expected an integer from {lo} to {hi}, got {raw!r}")
    return raw


def parse_notifier(raw: Mapping[str, Any]) -> Notifier:
    """One `[[notifiers]]` table. Raises FieldError naming the key (never echoing a secret)."""
    kind = raw.get("type")
    if kind not in TYPES:
        raise FieldError("type", f"expected one of {', '.join(TYPES)}, got {kind!r}")
    allowed = _COMMON + _KEYS[kind]
    for key in raw:
        if key not in allowed:
            raise FieldError(str(key), f"unknown key for type {kind!r} (expected {', '.join(allowed)})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise FieldError("name", "required: 1-64 characters of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    timeout = raw.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0.1 <= timeout <= 120:
        raise FieldError("timeout_s", f"expected a number of seconds from 0.1 to 120, got {timeout!r}")
    ca_file = _text(raw["ca_file"], "ca_file") if "ca_file" in raw else None
    base: dict[str, Any] = {"name": name, "timeout_s": float(timeout), "ca_file": ca_file}
    if kind == "alertmanager":
        urls = raw.get("urls")
        if not isinstance(urls, list) or not 1 <= len(urls) <= 16:
            raise FieldError("urls", 'expected a list of 1-16 Alertmanager URLs, e.g. ["http://127.0.0.1:9093"]')
        return AlertmanagerNotifier(**base, urls=tuple(_http_url(u, "urls").rstrip("/") for u in urls))
    if kind in ("webhook", "slack"):
        try:
            url = Secret(_http_url(raw.get("url"), "url"))
        except FieldError:  # the message must not echo the URL: it may be the secret
            raise FieldError("url", "required: an http:// or https:// URL with a host") from None
        if kind == "slack":
            return SlackNotifier(**base, url=url)
        headers = raw.get("headers", {})
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and _HEADER_RE.fullmatch(k) and isinstance(v, str) and "\n" not in v and "\r" not in v
            for k, v in headers.items()
        ):
            raise FieldError("headers", "expected a table of header names to single-line string values")
        max_alerts = _int(raw.get("max_alerts", 0), "max_alerts", 0, 10_000)
        return WebhookNotifier(
            **base, url=url, headers=tuple((k, Secret(v)) for k, v in headers.items()), max_alerts=max_alerts
        )
    security = raw.get("smtp_security", "starttls")
    if security not in ("starttls", "tls", "none"):
        raise FieldError("smtp_security", f"expected starttls, tls or none, got {security!r}")
    host = _text(raw.get("smtp_host"), "smtp_host", 253)
    port = _int(raw.get("smtp_port", 465 if security == "tls" else 587), "smtp_port", 1, 65535)
    user = _text(raw["smtp_user"], "smtp_user", 256) if "smtp_user" in raw else None
    password = raw.get("smtp_password")
    if password is not None and (not isinstance(password, str) or not password):
        raise FieldError("smtp_password", "expected a non-empty string")
    if (user is None) != (password is None):
        raise FieldError("smtp_password" if user else "smtp_user", "smtp_user and smtp_password go together")
    to = raw.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not 1 <= len(to) <= 100:
        raise FieldError("to", "expected 1-100 email addresses")
    return EmailNotifier(
        **base,
        smtp_host=host,
        smtp_port=port,
        smtp_security=security,
        smtp_user=user,
        smtp_password=Secret(password) if password is not None else None,
        sender=_address(raw.get("from"), "from"),
        to=tuple(_address(a, "to") for a in to),
    )


def parse_notifiers(raw: Sequence[Mapping[str, Any]]) -> dict[str, Notifier]:
    """`Settings.notifiers` -> notifiers by name, in file order; a bad table stops the hub at
    start, naming it and the key."""
    return {n.name: n for n in parse_tables("notifiers", raw, parse_notifier, lambda n: (n.name,))}

"""What one delivery carries (`Notification`) and what every notifier shares: Alertmanager's
JSON for an alert, RFC 3339 times, the readable summary Slack and email show, and the one HTTP
POST (with errors that never contain the secret URL)."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from obshub.alerts.model import Alert, AlertStatus

__all__ = [
    "ZERO_TIME",
    "DeliveryError",
    "Notification",
    "alert_json",
    "http_client",
    "post_json",
    "rfc3339",
    "shown_annotations",
]

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: Alertmanager's endsAt of a firing alert in webhooks


class DeliveryError(Exception):
    """A delivery attempt failed. `retry`: worth trying again (network, 5xx, 408, 429); a 4xx
    means the receiver refuses this request and would refuse it again. The message is safe to
    log and show: it names the masked target, never a secret."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Notification:
    """One message to one notifier: some alerts of one rule (or a test)."""

    rule_key: str  # the engine's key of the rule ("<project id>:<rule name>")
    receiver: str  # the notifier's name
    alerts: tuple[Alert, ...]
    external_url: str  # the hub's public_url: Alertmanager's externalURL
    at: int  # µs, when it was made
    test: bool = False  # from `obshub alerts test`: says so in the text

    @property
    def status(self) -> AlertStatus:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "resolved"]

    @property
    def group_labels(self) -> dict[str, str]:
        """What the rule's alerts are grouped by, as an Alertmanager route by [alertname, project]."""
        first = self.alerts[0].labels if self.alerts else {}
        return {k: first[k] for k in ("alertname", "project") if k in first}

    @property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common([shown_annotations(a) for a in self.alerts])

    @property
    def title(self) -> str:
        """`[FIRING:2] checkout-errors (default)`, as Alertmanager's default templates title it."""
        g = self.group_labels
        count = f":{len(self.firing)}" if self.status == "firing" else ""
        test = "[TEST] " if self.test else ""
        where = f" ({g['project']})" if "project" in g else ""
        return f"{test}[{self.status.upper()}{count}] {g.get('alertname', self.rule_key)}{where}"


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}


def rfc3339(us: int) -> str:
    """µs since the epoch -> RFC 3339 UTC with ms, as Alertmanager writes them."""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def shown_annotations(alert: Alert) -> dict[str, str]:
    """The alert's annotations, with its link as `url` too: templates and people read
    annotations; only Alertmanager's own UI shows generatorURL."""
    if alert.url and "url" not in alert.annotations:
        return {**alert.annotations, "url": alert.url}
    return dict(alert.annotations)


def alert_json(alert: Alert, ends_at: int | None = None) -> dict[str, Any]:
    """Alertmanager's postable alert (API v2). `ends_at` overrides a firing alert's end: the
    time until which Alertmanager keeps it firing without hearing of it again."""
    out: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": shown_annotations(alert),
        "startsAt": rfc3339(alert.starts_at),
    }
    end = alert.ends_at if alert.ends_at is not None else ends_at
    if end is not None:
        out["endsAt"] = rfc3339(end)
    if alert.url:
        out["generatorURL"] = alert.url
    return out


class _QuietRequests(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST https://hooks…"): for a
    webhook or Slack notifier that URL is the secret. Drops those records from the thread that is
    posting a notification; the hub's other httpx users keep theirs."""

    posting = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.posting, "on", False)


logging.getLogger("httpx").addFilter(_QuietRequests())


def http_client(timeout_s: float, ca_file: str | None) -> httpx.Client:
    """One client per notifier (its connections are reused between deliveries)."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    return httpx.Client(timeout=timeout_s, verify=verify, follow_redirects=False)


def post_json(
    client: httpx.Client, url: str, shown: str, body: Any, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """POST `body`; DeliveryError naming `shown` (the masked URL) unless the answer is 2xx."""
    _QuietRequests.posting.on = True
    try:
        r = client.post(url, json=body, headers=dict(headers or {}))
    except httpx.HTTPError as e:  # connect, timeout, protocol: the receiver may come back
        raise DeliveryError(f"{shown}: {type(e).__name__}: {_safe(str(e), url)}") from None
    finally:
        _QuietRequests.posting.on = False
    if r.is_success:
        return r
    detail = " ".join(r.text[:200].split())
    retry = r.status_code >= 500 or r.status_code in (408, 429)
    raise DeliveryError(f"{shown}: HTTP {r.status_code}{': ' + _safe(detail, url) if detail else ''}", retry=retry)


def _safe(text: str, url: str) -> str:
    """httpx puts the request URL in some messages; a secret URL must not reach a log line."""
    return text.replace(url, "***") if url else text

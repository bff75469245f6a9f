"""Alertmanager's API v2: `POST /api/v2/alerts` with a JSON list of alerts. As Prometheus does,
firing alerts are re-sent while they fire, each with an `endsAt` a few evaluations ahead (so a
hub that stops sending lets them resolve by themselves), and a resolved one with its real
`endsAt`."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from obshub.alerts.model import Alert
from obshub.alerts.notify.message import alert_json, post_json
from obshub.uptime.model import public_target

__all__ = ["body", "send"]


def body(alerts: Sequence[Alert], valid_until: int) -> list[dict[str, object]]:
    """`valid_until` (µs): the endsAt of the firing ones."""
    return [alert_json(a, ends_at=valid_until) for a in alerts]


def send(client: httpx.Client, url: str, alerts: Sequence[Alert], valid_until: int) -> None:
    """To one Alertmanager (`url` is its base URL). Raises DeliveryError."""
    post_json(client, f"{url}/api/v2/alerts", public_target(url), body(alerts, valid_until))

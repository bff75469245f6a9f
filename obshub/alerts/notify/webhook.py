"""A generic webhook: the body Alertmanager's webhook receiver posts (version "4"), so a
receiver written for Alertmanager (and the many that are) takes ours unchanged."""

from __future__ import annotations

import json
from typing import Any

import httpx

from obshub.alerts.notify.config import WebhookNotifier
from obshub.alerts.notify.message import ZERO_TIME, Notification, alert_json, post_json

__all__ = ["body", "send"]


def body(n: Notification, max_alerts: int = 0) -> dict[str, Any]:
    alerts = list(n.alerts[:max_alerts] if max_alerts else n.alerts)
    group = n.group_labels
    return {
        "version": "4",
        # Alertmanager's form: route matchers, then the group's labels (`{}` = the root route).
        "groupKey": "{}:{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(group.items())) + "}",
        "truncatedAlerts": len(n.alerts) - len(alerts),
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": group,
        "commonLabels": n.common_labels,
        "commonAnnotations": n.common_annotations,
        "externalURL": n.external_url,
        "alerts": [
            {
                "status": a.status,
                **alert_json(a),
                "endsAt": alert_json(a).get("endsAt", ZERO_TIME),
                "generatorURL": a.url,
                "fingerprint": a.fingerprint,
            }
            for a in alerts
        ],
    }


def send(client: httpx.Client, notifier: WebhookNotifier, n: Notification) -> None:
    headers = {k: v.reveal() for k, v in notifier.headers}
    post_json(client, notifier.url.reveal(), notifier.target, body(n, notifier.max_alerts), headers)

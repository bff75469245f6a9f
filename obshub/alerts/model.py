"""What a notification carries: `Alert`, one alert instance in Alertmanager's own terms (labels
identify it; annotations describe it), so every notifier, Alertmanager's API included, sends
the same thing and Alertmanager's routing, grouping and silences work on our labels unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["Alert", "AlertStatus", "Notify", "Route"]

AlertStatus = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    """One alert instance. `labels` always has `alertname` (the rule's name) and `project`, then
    the rule's own labels and, for rules with one instance per thing (an error group, a check),
    the label naming that thing (`group_id`, `check`). Times are µs since the epoch."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)  # summary, description, annotation, ...
    starts_at: int = 0
    ends_at: int | None = None  # set once resolved
    url: str = ""  # Alertmanager's generatorURL: the group, check or search on public_url

    @property
    def status(self) -> AlertStatus:
        return "resolved" if self.ends_at is not None else "firing"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def fingerprint(self) -> str:
        """Stable id of the instance (its sorted labels), as Alertmanager identifies alerts:
        16 hex digits of SHA-256."""
        text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Route:
    """Where and how often a rule's alerts are notified (the rule's `notify` and timing keys):
    the notification policy the dispatcher (notify/) applies per rule and notifier. Alertmanager
    notifiers get every firing alert at every evaluation regardless (Alertmanager expects them
    re-sent and does its own grouping and repeats); the built-in ones follow these."""

    notifiers: tuple[str, ...] = ()  # [[notifiers]] names; empty: every configured notifier
    group_wait_s: float = 30.0  # a rule's new alerts within this are sent as one notification
    repeat_interval_s: float = 4 * 3600.0  # re-notify a still-firing alert after this
    send_resolved: bool = True  # notify when an alert resolves
    muted_until: int | None = None  # µs; nothing is sent for the rule before then (state still changes)


class Notify(Protocol):
    """What the rule engine needs of delivery (notify/'s Dispatcher implements it)."""

    def update(self, rule_key: str, route: Route, alerts: Sequence[Alert], now_us: int) -> None:
        """Called once per evaluation pass for every rule with the rule's current alerts: the
        firing ones, and the ones resolved since the previous pass (`ends_at` set). Must not
        block on the network: deliveries happen on the dispatcher's own threads."""

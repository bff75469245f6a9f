"""What a notification carries: `Alert`, one alert instance in Alertmanager's own terms (labels
identify it; annotations describe it), so every notifier, Alertmanager's API included, sends
the same thing and Alertmanager's routing, grouping and silences work on our labels unchanged."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Alert", "AlertStatus"]

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

"""`obshub alerts test RULE`: one test alert through a rule's notifiers, one attempt each, outside
any Dispatcher (obshub/cli/alerts.py prints the outcomes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from obshub.alerts.model import Alert
from obshub.alerts.notify.config import parse_notifiers
from obshub.alerts.notify.dispatcher import deliver
from obshub.alerts.notify.message import Notification
from obshub.events import now_us
from obshub.settings import Settings

__all__ = ["TestOutcome", "test_notification"]


@dataclass(frozen=True)
class TestOutcome:
    """What `obshub alerts test` prints per notifier."""

    __test__ = False  # not a pytest test class

    notifier: str
    type: str
    target: str  # masked
    ok: bool
    detail: str  # "delivered" or the (masked) error

    def __str__(self) -> str:
        return f"{self.notifier} ({self.type} -> {self.target}): {'ok' if self.ok else 'FAILED'}: {self.detail}"


def test_notification(
    settings: Settings,
    notifier_names: Sequence[str],
    rule: str = "obshub-test",
    project: str = "default",
    labels: Mapping[str, str] | None = None,
) -> list[TestOutcome]:
    """Send one test alert to each named notifier (none named: every one), one attempt each,
    and say what happened. Its labels are the rule's (alertname, project, `labels`, so
    Alertmanager routes it as it would the rule's alerts) plus test="true"; Alertmanager gets it
    firing with an endsAt 5 minutes ahead, so it resolves by itself there."""
    notifiers = parse_notifiers(settings.notifiers)
    unknown = [n for n in notifier_names if n not in notifiers]
    names = list(notifier_names) or list(notifiers)
    now = now_us()
    alert = Alert(
        labels={**(labels or {}), "alertname": rule, "project": project, "test": "true"},
        annotations={"summary": f"Test notification for rule {rule} (obshub alerts test)"},
        starts_at=now,
        url=settings.base_url,
    )
    out = [TestOutcome(n, "?", "", False, "no such notifier in [[notifiers]]") for n in unknown]
    for name in names:
        if name not in notifiers:
            continue
        notifier = notifiers[name]
        n = Notification(f"test:{rule}", name, (alert,), settings.base_url, now, test=True)
        error = deliver(notifier, n)
        out.append(TestOutcome(name, notifier.type, notifier.target, error is None, str(error or "delivered")))
    return out


test_notification.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function

"""The readable form of a notification, shared by Slack and email: what, where, how many, first
and last seen, and the link, then one line per alert (at most MAX_LISTED)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from obshub.alerts.model import Alert
from obshub.alerts.notify.message import Notification, shown_annotations

__all__ = ["MAX_LISTED", "Item", "Summary", "summarize"]

MAX_LISTED = 20  # alerts listed one by one; a message about 500 groups stays readable
_HIDDEN = ("alertname", "project")  # in the title already


@dataclass(frozen=True)
class Item:
    status: str
    text: str  # summary or description, else the labels that tell the instances apart
    labels: str  # "severity=page, group_id=…"
    url: str


@dataclass(frozen=True)
class Summary:
    title: str  # [FIRING:2] checkout-errors (default)
    what: str  # the rule's summary/description/annotation, else its name
    where: str  # project and the labels common to every alert
    count: str  # "2 firing, 1 resolved"
    first_seen: str
    last_seen: str
    link: str
    items: tuple[Item, ...]
    more: int  # alerts not listed


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _text(a: Alert) -> str:
    ann = a.annotations
    return ann.get("summary") or ann.get("description") or ann.get("annotation") or ""


def _labels(labels: dict[str, str], skip: tuple[str, ...] = _HIDDEN) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip)


def _last_seen(a: Alert) -> int | None:
    """An annotation `last_seen` (RFC 3339, from the rule engine) if there is one, else the end."""
    raw = a.annotations.get("last_seen")
    if raw:
        try:
            return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1e6)
        except ValueError:
            pass
    return a.ends_at


def summarize(n: Notification) -> Summary:
    alerts = sorted(n.alerts, key=lambda a: (a.status != "firing", a.starts_at))
    common = n.common_annotations
    what = _text(Alert(labels={}, annotations=common)) or n.group_labels.get("alertname", n.rule_key)
    project = n.group_labels.get("project", "")
    common_labels = _labels(n.common_labels)
    where = f"project {project}" + (f" ({common_labels})" if common_labels else "")
    counts = [f"{len(n.firing)} firing"] if n.firing else []
    counts += [f"{len(n.resolved)} resolved"] if n.resolved else []
    starts = [a.starts_at for a in alerts if a.starts_at]
    seen = [t for a in alerts if (t := _last_seen(a)) is not None] or [n.at]
    link = next((a.url for a in alerts if a.url), "") or n.external_url
    items = tuple(
        Item(
            status=a.status,
            text=_text(a) if _text(a) != what else "",
            labels=_labels(a.labels, _HIDDEN + tuple(n.common_labels)),
            url=shown_annotations(a).get("url", ""),
        )
        for a in alerts[:MAX_LISTED]
    )
    return Summary(
        title=n.title,
        what=what,
        where=where,
        count=", ".join(counts) or "no alerts",
        first_seen=_when(min(starts)) if starts else "-",
        last_seen=_when(max(seen)),
        link=link,
        items=items,
        more=max(0, len(alerts) - MAX_LISTED),
    )

"""A Slack incoming webhook: a message people read in a channel (the title, what, where, how
many, first/last seen, a link), as Block Kit with `text` as the notification's fallback."""

from __future__ import annotations

from typing import Any

import httpx

from obshub.alerts.notify.config import SlackNotifier
from obshub.alerts.notify.message import Notification, post_json
from obshub.alerts.notify.render import summarize

__all__ = ["body", "send"]

_MAX_TEXT = 2900  # a section's text may be 3,000 characters


def _escape(text: str) -> str:
    """Slack's mrkdwn reserves &, < and > (links are <url|label>)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def body(n: Notification) -> dict[str, Any]:
    s = summarize(n)
    icon = ":white_check_mark:" if n.status == "resolved" else ":rotating_light:"
    link = f"<{s.link}|open in obshub>" if s.link else ""
    fields = [
        f"*What*\n{_escape(s.what)}",
        f"*Where*\n{_escape(s.where)}",
        f"*How many*\n{s.count}",
        f"*First seen*\n{s.first_seen}",
        f"*Last seen*\n{s.last_seen}",
    ]
    lines = []
    for item in s.items:
        text = " — ".join(_escape(t) for t in (item.text, item.labels) if t) or item.status
        lines.append(f"• {item.status}: <{item.url}|{text}>" if item.url else f"• {item.status}: {text}")
    if s.more:
        lines.append(f"… and {s.more} more")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": s.title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f[:2000]} for f in fields]},
    ]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:_MAX_TEXT]}})
    if link:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    return {
        "text": f"{icon} {_escape(s.title)}: {_escape(s.what)} ({s.count}, {_escape(s.where)}) {link}".strip(),
        "blocks": blocks,
    }


def send(client: httpx.Client, notifier: SlackNotifier, n: Notification) -> None:
    post_json(client, notifier.url.reveal(), notifier.target, body(n))

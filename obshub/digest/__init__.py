"""Per-event work between validation and storage: scrub PII, find tracebacks in log text,
fingerprint errors. Pure functions over normalized events; no I/O (the store records groups)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from obshub.digest.grouping import CURRENT as GROUPING
from obshub.digest.scrub import Scrubber
from obshub.digest.traceback import parse_traceback

__all__ = ["GroupSeen", "Scrubber", "digest"]

_TRACEBACK_LEVELS = ("error", "critical")


@dataclass
class GroupSeen:
    """A group touched by a batch: enough to create it if new, or flip it on regression."""

    id: str
    title: str
    type: str | None
    culprit: str | None
    level: str
    version: str
    first_seen: int  # earliest ts in this batch


def digest(events: list[dict[str, Any]], scrubber: Scrubber) -> dict[str, GroupSeen]:
    """Scrub and group `events` in place; returns the groups they belong to by id."""
    groups: dict[str, GroupSeen] = {}
    for ev in events:
        fp = ev.pop("fingerprint", None)  # a client hint, never stored
        scrubber.event(ev)
        if ev["kind"] != "error":
            if ev["level"] in _TRACEBACK_LEVELS and ev["message"] and ev["error"] is None:
                tb = parse_traceback(ev["message"])
                if tb is None:
                    continue
                ev["error"], ev["kind"] = tb, "error"  # a logged traceback is an error occurrence
            else:
                continue
        gid = GROUPING.fingerprint({**ev, "fingerprint": fp} if fp else ev)
        ev["group_id"] = gid
        g = groups.get(gid)
        if g is None:
            title, typ, culprit = GROUPING.title_and_culprit(ev)
            groups[gid] = GroupSeen(gid, title, typ, culprit, ev["level"], GROUPING.VERSION, ev["ts"])
        else:
            g.first_seen = min(g.first_seen, ev["ts"])
    return groups

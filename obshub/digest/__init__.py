"""Per-event work between validation and storage: scrub PII, parse traceback text into frames,
fingerprint errors. Pure functions over normalized events; no I/O (the store records groups).
Every stored event passes here, whichever way it came in (obshub/ingest/pipeline.py)."""

from __future__ import annotations

from obshub.digest.grouping import CURRENT as GROUPING
from obshub.digest.scrub import Scrubber
from obshub.digest.traceback import parse_traceback
from obshub.events import NormalizedEvent
from obshub.store.base import GroupSeen  # what digest hands the store: defined where the store reads it

__all__ = ["GroupSeen", "Scrubber", "digest"]

_TRACEBACK_LEVELS = ("error", "critical")


def _occurrence(ev: NormalizedEvent) -> bool:
    """Turn traceback text the event carries into frames; True if it is an error occurrence.

    One traceback, one group, whichever way it comes: as `error.stack` text (the agent's
    multiline Python tracebacks), as `error` itself sent as text, as the message of an error
    event, or as the message of a log line at level error/critical (any Python or Java trace),
    it is parsed into the same frames an SDK would have sent, and those are stored, so the
    error page lists them."""
    error = ev["error"]
    kind = ev["kind"]
    if kind == "error":
        if error is None:
            if ev["message"] and (tb := parse_traceback(ev["message"])) is not None:
                ev["error"] = tb
            return True
        stack, value = error.get("stack"), error.get("value")
        if isinstance(stack, str):
            text = stack
        elif not stack and error.get("type") is None and isinstance(value, str):
            text = value  # `"error": "<traceback text>"` (normalize made it the value)
        else:
            return True
        if (tb := parse_traceback(text)) is not None:
            ev["error"] = {**error, **tb}
        return True
    # Only log lines: analytics events and uptime results (kind=check) are never error occurrences.
    if kind == "log" and error is None and ev["level"] in _TRACEBACK_LEVELS and ev["message"]:
        tb = parse_traceback(ev["message"])
        if tb is not None:
            ev["error"], ev["kind"] = tb, "error"  # a logged traceback is an error occurrence
            return True
    return False


def digest(events: list[NormalizedEvent], scrubber: Scrubber) -> dict[str, GroupSeen]:
    """Scrub and group `events` in place; returns the groups they belong to by id."""
    groups: dict[str, GroupSeen] = {}
    for ev in events:
        fp = ev.pop("fingerprint", None)  # a client hint, never stored
        scrubber.event(ev)
        if ev["kind"] == "log" and ev["level"] not in _TRACEBACK_LEVELS:
            continue  # most lines: no function call
        if not _occurrence(ev):
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

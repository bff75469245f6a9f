"""User paths (docs/analytics.md): what users do next after an event.

Each user (or session, `unit`) is taken from their first anchor event in the range (by ts, then
id, as a funnel's entry); their path is the names of the next `steps` events after it (by ts, then
id) at most `window` after it. Paths and first next events are counted per user, the most
frequent first. Names outside the range's MAX_NAMES most frequent come as null.

One store read, as funnels (`Store.event_rows`): the anchor's rows, one step per frequent name
(the step index is the name), and every event (the rest).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from obshub.errors import QueryError
from obshub.query.funnels import UNITS, Step, _duration, _known, _range, _step, _str, _users
from obshub.store.base import Store
from obshub.store.querylang import And, Field

__all__ = ["MAX_NAMES", "paths"]

MAX_NAMES = 20  # event names told apart: the range's most frequent; the others are null
MAX_DEPTH = 5
MAX_TOP = 100


def _int(body: dict[str, Any], name: str, default: int, hi: int) -> int:
    v = body.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
        raise QueryError(f"{name}: expected an integer from 1 to {hi}")
    return v


def paths(store: Store, pid: int, body: dict[str, Any], now: int) -> dict[str, Any]:
    _known(body, {"event", "steps", "window", "top", "unit", "from", "to"})
    if body.get("event") is None:
        raise QueryError("event: required (the event the paths start from)")
    anchor = _step(body["event"], "event")
    depth = _int(body, "steps", 3, MAX_DEPTH)
    top = _int(body, "top", 10, MAX_TOP)
    window = _duration(body, "window", "1h")
    unit = _str(body, "unit") or "user"
    if unit not in UNITS:
        raise QueryError(f"unit: expected one of {', '.join(UNITS)}")
    start, end = _range(body, now)
    names = [n for n, _ in store.event_names(pid, start, end, MAX_NAMES)]
    steps = [anchor, *(Step(n) for n in names), Step(None)]
    entered = seen = 0
    firsts: Counter[Any] = Counter()
    walks: Counter[tuple[Any, ...]] = Counter()
    for rows in _users(store, pid, steps, start, end, None, unit):
        # One event comes once per step it matches, adjacent (rows by ts, id, step): its name is
        # its lowest name step's, else null.
        events: list[tuple[int, str, Any]] = []
        entry: tuple[int, str] | None = None
        for ts, eid, i, _ in rows:
            if i == 0:
                seen += 1
                entry = entry or (ts, eid)  # rows come by ts, id: the first is the oldest
                continue
            if events and events[-1][:2] == (ts, eid):
                continue
            events.append((ts, eid, names[i - 1] if i <= len(names) else None))
        if entry is None:
            continue
        entered += 1
        limit = entry[0] + window
        walk = tuple(name for ts, eid, name in events if (ts, eid) > entry and ts <= limit)[:depth]
        if walk:
            firsts[walk[0]] += 1
            walks[walk] += 1
    q0 = anchor.query()
    kind = Field("kind", "=", "event")
    anchors = store.count(pid, kind if q0 is None else And((kind, q0)), start, end)
    return {
        "event": anchor.event,
        "q": anchor.q,
        "unit": unit,
        "window_seconds": window // 1_000_000,
        unit + "s": entered,
        f"{unit}s_without_next": entered - sum(firsts.values()),
        "next": [{"event": n, unit + "s": c} for n, c in _ranked(firsts, top)],
        "paths": [{"events": list(w), unit + "s": c} for w, c in _ranked(walks, top)],
        f"events_without_{unit}": anchors - seen,
    }


def _ranked(counts: Counter[Any], top: int) -> list[tuple[Any, int]]:
    """Most frequent first, ties by the names (null last): the same order on every store."""
    return sorted(counts.items(), key=lambda kc: (-kc[1], repr(kc[0])))[:top]

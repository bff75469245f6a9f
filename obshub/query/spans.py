"""The span tree of a trace: the `kind=span` events (what OTLP ingest stores, docs/otlp.md) nested
by `attrs["span.parent_id"]`, on corrected time, with the logs of each span. Pure; no I/O.

- Order: depth first, children by corrected start (ties: the store's order). A span whose parent
  is not in the trace (not sent, cut by the 10,000-event cap, or a cycle of parent links) is a
  root marked `orphan`: shown, never dropped.
- Time: a span's start is its host's clock; it is corrected like a log line (minus the host's
  estimated skew, `obshub.clock`). Durations are measured on one host's clock and kept as sent.
  A child that still starts before its parent after correction says the estimate (or the
  clock) is off: it is flagged `before_parent`, not moved.
- Critical path: from the longest root, repeatedly the child that *ends last* (ties: the longer
  one): the chain of spans the root was waiting for. Every span on it is `critical`.
- Slowest: up to `SLOWEST` spans with the largest self time (`self_ms`: the duration minus the
  time a child was running), each at least 10% of the trace: where the time went. A 900 ms query
  under a 1.4 s call is one even when the critical path goes on through a later sibling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from obshub.clock import corrected_ts
from obshub.events import format_ts, parse_ts

__all__ = ["SLOWEST", "SLOWEST_SHARE", "span_tree"]

SLOWEST = 3  # spans marked `slowest`: the largest self times...
SLOWEST_SHARE = 0.1  # ...each at least 10% of the trace's span: a 30 ms span in a 1.4 s trace is not slow


def _self_us(i: int, starts: list[int], ends: list[int], kids: list[int]) -> int:
    """A span's own time: its duration minus the time some child of it was running (children
    clipped to it, overlaps counted once)."""
    lo, hi = starts[i], ends[i]
    covered, at = 0, lo
    for a, b in sorted((max(starts[c], lo), min(ends[c], hi)) for c in kids):
        a = max(a, at)
        if b > a:
            covered += b - a
            at = b
    return max(hi - lo - covered, 0)


def _duration_us(e: Mapping[str, Any]) -> int:
    d = (e.get("attrs") or {}).get("duration_ms")
    if isinstance(d, bool) or not isinstance(d, int | float) or not 0 <= d < 1e12:
        return 0
    return int(d * 1000)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def span_tree(events: Sequence[Mapping[str, Any]], offsets: Mapping[str, int]) -> list[dict[str, Any]]:
    """The trace's spans, flat in tree order (`depth`, `parent_id`), from its public events
    (`trace()["events"]`) and each host's clock offset in µs."""
    spans = [e for e in events if e.get("kind") == "span"]
    if not spans:
        return []
    starts = [corrected_ts(parse_ts(e["ts"]), e.get("host"), offsets) for e in spans]
    by_sid: dict[str, int] = {}
    for i, e in enumerate(spans):
        sid = _str(e.get("span_id"))
        if sid is not None:
            by_sid.setdefault(sid, i)  # a span id sent twice: the first is the parent
    logs: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        sid = _str(e.get("span_id"))
        if e.get("kind") != "span" and sid in by_sid:
            logs.setdefault(sid, []).append(e)
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for i, e in enumerate(spans):
        pid = _str((e.get("attrs") or {}).get("span.parent_id"))
        p = by_sid.get(pid) if pid is not None else None
        if p is None or p == i:
            roots.append(i)
        else:
            children.setdefault(p, []).append(i)

    def first(i: int) -> tuple[int, int]:
        return starts[i], i

    order: list[tuple[int, int]] = []  # (span index, depth)
    seen: set[int] = set()

    def walk(root: int) -> None:
        stack = [(root, 0)]
        while stack:  # iterative: a 10,000-span chain is deeper than Python's recursion limit
            i, d = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            order.append((i, d))
            stack.extend((c, d + 1) for c in sorted(children.get(i, []), key=first, reverse=True))

    for r in sorted(roots, key=first):
        walk(r)
    # Spans in a cycle of parent links reach no root: each becomes an orphan root.
    for i in sorted(set(range(len(spans))) - seen, key=first):
        if i not in seen:
            roots.append(i)
            walk(i)
    ends = [starts[i] + _duration_us(spans[i]) for i in range(len(spans))]
    critical: set[int] = set()
    if roots:
        node: int | None = max(roots, key=lambda i: (ends[i] - starts[i], -i))
        while node is not None and node not in critical:
            critical.add(node)
            kids = children.get(node, [])
            node = max(kids, key=lambda c: (ends[c], ends[c] - starts[c], -c)) if kids else None
    own = {i: _self_us(i, starts, ends, children.get(i, [])) for i in range(len(spans))}
    t0 = min(starts)
    floor = (max(ends) - t0) * SLOWEST_SHARE
    slowest = set(sorted((i for i in own if own[i] > 0 and own[i] >= floor), key=lambda i: (-own[i], i))[:SLOWEST])
    root_set = set(roots)
    out: list[dict[str, Any]] = []
    for i, depth in order:
        e = spans[i]
        attrs = e.get("attrs") or {}
        pid = _str(attrs.get("span.parent_id"))
        parent = by_sid.get(pid) if pid is not None else None
        mine = logs.get(_str(e.get("span_id")) or "", []) if by_sid.get(_str(e.get("span_id")) or "") == i else []
        out.append(
            {
                "id": e.get("id"),
                "span_id": _str(e.get("span_id")),
                "parent_id": pid,
                "name": e.get("name") or e.get("message"),
                "service": e.get("service"),
                "host": e.get("host"),
                "span_kind": attrs.get("span.kind"),
                "status": attrs.get("span.status") or ("error" if e.get("level") in ("error", "critical") else "unset"),
                "status_message": attrs.get("span.status_message"),
                "start": format_ts(starts[i]),
                "offset_ms": round((starts[i] - t0) / 1000, 3),
                "duration_ms": round(_duration_us(e) / 1000, 3),
                "self_ms": round(own[i] / 1000, 3),
                "slowest": i in slowest,
                "depth": depth,
                "orphan": i in root_set and pid is not None,
                "critical": i in critical,
                "before_parent": parent is not None and i not in root_set and starts[i] < starts[parent],
                "logs": [
                    {
                        "id": x.get("id"),
                        "offset_ms": round((corrected_ts(parse_ts(x["ts"]), x.get("host"), offsets) - t0) / 1000, 3),
                        "error": x.get("kind") == "error" or x.get("level") in ("error", "critical"),
                        "message": x.get("message"),
                    }
                    for x in mine
                ],
            }
        )
    return out

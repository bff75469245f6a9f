"""Geometry of the trace page: lanes, time axis and markers, computed here so the template only
draws. Pure functions over the `trace()` result; no I/O.

One lane per (host, service), lanes of a host kept together, hosts in order of first event. Time
is either raw (each host's own clock) or corrected (minus the host's estimated skew, see
`obshub.clock`). Up to `MARKER_CAP` events get one marker each; a bigger trace is drawn
as per-lane density columns (one per `BUCKET_PX`), so a 10k-event trace is still a few hundred
SVG nodes, and the event list below is paginated (`PAGE_SIZE`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from obshub.clock import corrected_ts
from obshub.events import format_ts, parse_ts

__all__ = ["PAGE_SIZE", "layout", "nice_ticks", "waterfall"]

WIDTH = 1000  # viewBox units of the plot area (the SVG scales to the page width)
GUTTER = 200  # left labels: host and service names
LANE_H = 28
AXIS_H = 30
MARKER_CAP = 1500  # above this, density columns instead of one marker per event
BUCKET_PX = 4
PAGE_SIZE = 500  # event rows per page of the list below the chart


def is_error(e: Mapping[str, Any]) -> bool:
    return e.get("kind") == "error" or e.get("level") in ("error", "critical")


def nice_ticks(span_us: int, max_ticks: int = 8) -> tuple[int, list[int]]:
    """(step, offsets) in µs: a 1-2-5 step giving at most `max_ticks` ticks over the span."""
    span = max(span_us, 1)
    raw = span / max_ticks
    mag = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(int(step), 1)
    return step, list(range(0, span + 1, step))


def fmt_offset(us: int) -> str:
    if us == 0:
        return "0"
    a = abs(us)
    if a < 1000:
        return f"+{us} µs"
    if a < 1_000_000:
        return f"+{round(us / 1000, 1):g} ms"
    if a < 120_000_000:
        return f"+{round(us / 1_000_000, 3):g} s"
    return f"+{round(us / 60_000_000, 1):g} min"


def layout(tr: Mapping[str, Any], offsets: Mapping[str, int], corrected: bool) -> dict[str, Any]:
    events = []
    for i, e in enumerate(tr["events"]):
        raw = parse_ts(e["ts"])
        fixed = corrected_ts(raw, e.get("host"), offsets)
        # `_event`: the event as the API returns it, for the raw-JSON view (no `_` fields).
        events.append(
            {
                **e,
                "_event": e,
                "_raw": raw,
                "_fixed": fixed,
                "_t": fixed if corrected else raw,
                "_err": is_error(e),
                "_i": i,
            }
        )
    events.sort(key=lambda e: (e["_t"], e["_i"]))  # stable: a host's own lines keep their order
    lanes: list[dict[str, Any]] = []
    lane_of: dict[tuple[str, str], int] = {}
    host_order = list(dict.fromkeys(e.get("host") or "(no host)" for e in events))
    by_host: dict[str, list[str]] = {h: [] for h in host_order}
    for e in events:
        h, s = e.get("host") or "(no host)", e.get("service") or "(no service)"
        if s not in by_host[h]:
            by_host[h].append(s)
    for h in host_order:
        for j, s in enumerate(sorted(by_host[h])):
            lane_of[(h, s)] = len(lanes)
            lanes.append(
                {"host": h, "service": s, "first": j == 0, "y": AXIS_H + len(lanes) * LANE_H, "count": 0, "errors": 0}
            )
    t0 = events[0]["_t"] if events else 0
    t1 = events[-1]["_t"] if events else 0
    span = max(t1 - t0, 1)

    def x(t: int) -> float:
        return round(GUTTER + 10 + (t - t0) / span * (WIDTH - GUTTER - 30), 2)

    for n, e in enumerate(events):
        e["_n"] = n
        e["_lane"] = lane_of[(e.get("host") or "(no host)", e.get("service") or "(no service)")]
        e["_x"] = x(e["_t"])
        e["_rel"] = fmt_offset(e["_t"] - t0)
        lanes[e["_lane"]]["count"] += 1
        lanes[e["_lane"]]["errors"] += e["_err"]
    step, ticks = nice_ticks(span)
    density: list[dict[str, Any]] = []
    if len(events) > MARKER_CAP:
        cells: dict[tuple[int, int], dict[str, Any]] = {}
        for e in events:
            col = int((e["_x"] - GUTTER - 10) // BUCKET_PX)
            c = cells.setdefault(
                (e["_lane"], col),
                {"lane": e["_lane"], "x": GUTTER + 10 + col * BUCKET_PX, "count": 0, "errors": 0, "first": e["_n"]},
            )
            c["count"] += 1
            c["errors"] += e["_err"]
        peak = max(c["count"] for c in cells.values())
        for c in cells.values():
            c["h"] = max(3, round((LANE_H - 8) * math.sqrt(c["count"] / peak)))
            density.append(c)
    hosts = [
        {
            "host": h,
            "skew_us": offsets.get(h, 0),
            "services": sorted(by_host[h]),
            "events": sum(1 for e in events if (e.get("host") or "(no host)") == h),
        }
        for h in host_order
    ]
    reordered = corrected and any(a["_i"] > b["_i"] for a, b in itertools.pairwise(events))
    return {
        "events": events,
        "lanes": lanes,
        "hosts": hosts,
        "density": density,
        "ticks": [{"x": x(t0 + t), "label": fmt_offset(t)} for t in ticks],
        "width": WIDTH,
        "gutter": GUTTER,
        "height": AXIS_H + max(len(lanes), 1) * LANE_H + 10,
        "lane_h": LANE_H,
        "axis_h": AXIS_H,
        "markers": len(events) <= MARKER_CAP,
        "step": step,
        "skewed": any(h["skew_us"] for h in hosts),
        "reordered": reordered,
        # The header's range, on the time the page is ordered on (corrected or raw).
        "start": format_ts(t0) if events else None,
        "end": format_ts(t1) if events else None,
    }


WF_ROW_H = 22
WF_GUTTER = 300  # span labels: name and service@host, indented by depth
WF_RIGHT = 110  # room right of the longest bar for its duration
CHAR_W = 6  # about one character of the 11 px label font, in viewBox units
WF_CAP = 500  # spans drawn; a bigger trace lists the first 500 in tree order and says so


def _label(s: Mapping[str, Any], chars: int) -> tuple[str, str]:
    """(name, " service@host") cut to `chars` (the name is cut first; the title has it whole)."""
    where = f" {s['service'] or ''}@{s['host'] or '?'}"
    name = ("⚠ orphan · " if s["orphan"] else "") + str(s["name"] or "")
    room = max(chars - len(where), 8)
    if len(name) > room:
        name = name[: room - 1] + "…"
    return name, where[: max(chars - len(name), 0)]


def waterfall(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of the span waterfall (`obshub.query.spans.span_tree`): one bar per span from its
    corrected start for its duration, log ticks at their corrected times, on one axis."""
    shown = spans[:WF_CAP]
    if not shown:
        return {"rows": [], "total": len(spans)}
    end_ms = max(
        max(s["offset_ms"] + s["duration_ms"] for s in shown),
        max((lg["offset_ms"] for s in shown for lg in s["logs"]), default=0.0),
    )
    span_us = max(int(end_ms * 1000), 1)
    plot = WIDTH - WF_GUTTER - WF_RIGHT

    def x(ms: float) -> float:
        return round(WF_GUTTER + 10 + max(ms, 0) * 1000 / span_us * plot, 2)

    rows = []
    for n, s in enumerate(shown):
        x0 = x(s["offset_ms"])
        indent = min(s["depth"], 12) * 10
        rows.append(
            {
                **s,
                "_y": AXIS_H + n * WF_ROW_H,
                "_x": x0,
                "_w": max(round(x(s["offset_ms"] + s["duration_ms"]) - x0, 2), 2.0),
                "_indent": indent,
                "_label": _label(s, (WF_GUTTER - 12 - indent) // CHAR_W),
                "_err": s["status"] == "error",
                "_ticks": [{"x": x(lg["offset_ms"]), **lg} for lg in s["logs"]],
            }
        )
    _step, ticks = nice_ticks(span_us)
    return {
        "rows": rows,
        "total": len(spans),
        "ticks": [{"x": x(t / 1000), "label": fmt_offset(t)} for t in ticks],
        "height": AXIS_H + len(rows) * WF_ROW_H + 10,
        "row_h": WF_ROW_H,
        "critical": sum(1 for s in shown if s["critical"]),
        "orphans": sum(1 for s in shown if s["orphan"]),
        "before_parent": sum(1 for s in shown if s["before_parent"]),
    }

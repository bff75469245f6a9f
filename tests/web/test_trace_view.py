"""Geometry of the trace page (pure functions): lanes, markers inside the drawing, density mode
for big traces, tick steps."""

from __future__ import annotations

from typing import Any

from obshub.events import format_ts
from obshub.web.charts import bars, sparkline
from obshub.web.trace_view import GUTTER, MARKER_CAP, WIDTH, fmt_offset, layout, nice_ticks

T0 = 1_700_000_000_000_000


def _trace(n: int, hosts: tuple[str, ...] = ("web-1", "web-2"), step_us: int = 1000) -> dict[str, Any]:
    events = [
        {
            "id": f"e{i}",
            "ts": format_ts(T0 + i * step_us),
            "host": hosts[i % len(hosts)],
            "service": "api" if i % 3 else "web",
            "kind": "error" if i == n // 2 else "log",
            "level": "error" if i == n // 2 else "info",
            "message": f"line {i}",
        }
        for i in range(n)
    ]
    return {"events": events}


def test_lanes_per_host_grouped_by_service_and_markers_inside() -> None:
    v = layout(_trace(12), {}, corrected=True)
    assert [(lane["host"], lane["service"]) for lane in v["lanes"]] == [
        ("web-1", "api"),
        ("web-1", "web"),
        ("web-2", "api"),
        ("web-2", "web"),
    ]
    assert [lane["first"] for lane in v["lanes"]] == [True, False, True, False]
    xs = [e["_x"] for e in v["events"]]
    assert min(xs) > GUTTER and max(xs) < WIDTH
    assert xs == sorted(xs)
    assert sum(e["_err"] for e in v["events"]) == 1
    assert v["markers"] and not v["density"]


def test_corrected_layout_reorders_and_says_so() -> None:
    tr = {
        "events": [
            {"id": "b", "ts": format_ts(T0), "host": "fast"},
            {"id": "a", "ts": format_ts(T0 + 2_000_000), "host": "slow"},
        ]
    }
    offsets = {"slow": 3_000_000}  # slow's clock is 3 s ahead: its line really came first
    v = layout(tr, offsets, corrected=True)
    assert [e["id"] for e in v["events"]] == ["a", "b"] and v["reordered"] and v["skewed"]
    raw = layout(tr, offsets, corrected=False)
    assert [e["id"] for e in raw["events"]] == ["b", "a"] and not raw["reordered"]


def test_big_trace_is_drawn_as_density_columns() -> None:
    v = layout(_trace(5000, hosts=("a", "b", "c")), {}, corrected=True)
    assert not v["markers"]
    assert len(v["events"]) == 5000 > MARKER_CAP
    # A few hundred SVG nodes for 5000 events, every event counted once, the error kept visible.
    assert len(v["density"]) < 1500
    assert sum(c["count"] for c in v["density"]) == 5000
    assert sum(c["errors"] for c in v["density"]) == 1
    assert all(GUTTER <= c["x"] < WIDTH for c in v["density"])


def test_empty_trace() -> None:
    v = layout({"events": []}, {}, corrected=True)
    assert v["events"] == [] and v["lanes"] == []


def test_nice_ticks_and_offsets() -> None:
    step, ticks = nice_ticks(40_000)
    assert step == 5_000 and ticks[-1] <= 40_000 and len(ticks) <= 9
    assert nice_ticks(1)[1] == [0, 1]
    assert fmt_offset(0) == "0"
    assert fmt_offset(498_250) == "+498.2 ms" or fmt_offset(498_250) == "+498.3 ms"
    assert fmt_offset(1_500_000) == "+1.5 s"
    assert fmt_offset(750) == "+750 µs"


def test_bar_chart_and_sparkline() -> None:
    pts = [{"t": format_ts(T0 + i * 3_600_000_000), "count": c} for i, c in enumerate([0, 4, 10, 2])]
    ch = bars(pts)
    assert ch["total"] == 16 and ch["peak"] == 10
    tallest = max(ch["rects"], key=lambda r: r["h"])
    assert tallest["count"] == 10 and tallest["y"] >= 0
    assert all(r["h"] == 0 for r in ch["rects"] if r["count"] == 0)
    assert sparkline([]) == ""
    assert len(sparkline([1, 2, 3]).split()) == 3

"""SVG chart geometry (bars over time, sparklines), computed in Python so templates only draw and
the page needs no charting library."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from obshub.web.trace_view import nice_ticks

__all__ = ["bars", "latency_line", "series_chart", "sparkline"]


def bars(
    points: Sequence[dict[str, Any]], width: int = 900, height: int = 220, left: int = 48, bottom: int = 26
) -> dict[str, Any]:
    """`[{"t", "count"}]` -> bar rects, y ticks and ~6 x labels, in a width x height viewBox."""
    n = max(len(points), 1)
    peak = max((p["count"] for p in points), default=0)
    step, yticks = nice_ticks(max(peak, 1), 4)
    if yticks[-1] < peak:
        yticks.append(yticks[-1] + step)  # the top gridline sits above the tallest bar
    top_val = max(yticks[-1], 1)
    plot_w, plot_h = width - left - 36, height - bottom - 8  # right margin: room for the last x label
    bw = plot_w / n
    rects = []
    for i, p in enumerate(points):
        h = p["count"] / top_val * plot_h
        rects.append(
            {
                "x": round(left + i * bw, 2),
                "y": round(8 + plot_h - h, 2),
                "w": round(max(bw - 1, 0.5), 2),
                "h": round(h, 2),
                "t": p["t"],
                "count": p["count"],
            }
        )
    every = max(1, n // 6)
    xlabels = [
        {"x": round(left + i * bw + bw / 2, 2), "label": p["t"][5:16].replace("T", " ")}
        for i, p in enumerate(points)
        if i % every == 0
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "plot_h": plot_h,
        "bottom": 8 + plot_h,
        "rects": rects,
        "xlabels": xlabels,
        "total": sum(p["count"] for p in points),
        "peak": peak,
        "yticks": [{"y": round(8 + plot_h - v / top_val * plot_h, 2), "label": v} for v in yticks],
    }


def sparkline(counts: Sequence[int], width: int = 120, height: int = 24) -> str:
    """Polyline points for a small trend line."""
    if not counts:
        return ""
    peak = max(max(counts), 1)
    step = width / max(len(counts) - 1, 1)
    return " ".join(
        f"{round(i * step, 1)},{round(height - 2 - c / peak * (height - 4), 1)}" for i, c in enumerate(counts)
    )


def latency_line(
    points: Sequence[tuple[float, float | None, bool]], step: float, width: int = 360, height: int = 64
) -> dict[str, Any]:
    """Response time over a window: `(x in 0..1, mean latency ms or None, a probe failed)` ->
    polylines (a gap without results breaks the line, rather than drawing across it), the
    x of buckets with a failure, and the peak (the y scale). `step`: one bucket's width in x."""
    peak = max((ms for _, ms, _ in points if ms is not None), default=0.0)
    top = max(peak, 1.0)
    lines: list[list[str]] = []
    dots: list[dict[str, float]] = []  # every bucket's point: a lone one draws no line
    last_x = -1.0
    for x, ms, _ in points:
        if ms is None:
            last_x = -1.0
            continue
        if last_x < 0 or x - last_x > step * 1.5:
            lines.append([])
        px, py = round(x * width, 1), round(height - 2 - ms / top * (height - 4), 1)
        lines[-1].append(f"{px},{py}")
        dots.append({"x": px, "y": py})
        last_x = x
    return {
        "width": width,
        "height": height,
        "lines": [" ".join(pts) for pts in lines if len(pts) > 1],
        "dots": dots,
        "fails": [round(x * width, 1) for x, _, failed in points if failed],
        "peak": round(peak, 1),
    }


def _value_ticks(peak: float, n: int = 4) -> list[float]:
    """0 and a 1-2-5 step up to at least `peak` (values are any numbers: counts, ms, ratios)."""
    top = peak if peak > 0 else 1.0
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [round(i * step, 10) for i in range(math.ceil(top / step - 1e-9) + 1)]


def series_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    kind: str = "line",
    width: int = 900,
    height: int = 240,
    left: int = 56,
    bottom: int = 26,
) -> dict[str, Any]:
    """Several named series over the same x labels (time buckets, or groups when there is no
    time axis) -> a line per series (None breaks it) or side-by-side bars, y ticks, ~6 x labels.
    The colour of series i is the CSS class `s{i % 8}`."""
    n = max(len(labels), 1)
    peak = max((v for _, vals in series for v in vals if v is not None), default=0.0)
    yticks = _value_ticks(float(peak))
    top_val = yticks[-1] or 1.0
    plot_w, plot_h, y0 = width - left - 36, height - bottom - 8, 8
    slot = plot_w / n

    def y(v: float) -> float:
        return round(y0 + plot_h - v / top_val * plot_h, 2)

    lines: list[dict[str, Any]] = []
    rects: list[dict[str, Any]] = []
    k = max(len(series), 1)
    for si, (name, vals) in enumerate(series):
        if kind == "bar":
            bw = max(slot / k - 1, 0.5)
            for i, v in enumerate(vals):
                if v is not None:
                    h = round(v / top_val * plot_h, 2)
                    x = round(left + i * slot + si * (slot / k), 2)
                    rects.append({"x": x, "y": y(v), "w": round(bw, 2), "h": h, "s": si, "label": labels[i], "v": v})
            continue
        runs: list[list[str]] = [[]]
        dots = []
        for i, v in enumerate(vals):
            if v is None:
                runs.append([])
                continue
            px = round(left + i * slot + slot / 2, 2)
            runs[-1].append(f"{px},{y(v)}")
            dots.append({"x": px, "y": y(v), "label": labels[i], "v": v})
        lines.append({"name": name, "s": si, "points": [" ".join(r) for r in runs if r], "dots": dots})
    every = max(1, math.ceil(n / 6))
    return {
        "width": width,
        "height": height,
        "left": left,
        "bottom": y0 + plot_h,
        "lines": lines,
        "rects": rects,
        "legend": [{"name": name, "s": si} for si, (name, _) in enumerate(series)],
        "xlabels": [
            {"x": round(left + i * slot + slot / 2, 2), "label": lab} for i, lab in enumerate(labels) if i % every == 0
        ],
        "yticks": [{"y": y(v), "label": f"{v:g}"} for v in yticks],
        "peak": peak,
    }

"""One aggregation as the Visualize view, a dashboard panel and a public panel draw it: the
answer of GET /api/v1/aggregate (obshub/query/aggregate.py `to_json`, the very numbers the API
gives) -> named series over time buckets -> an SVG chart (web/charts.py) and a table.

Series: the total without `group_by`; else each group (two levels: "a / b", and a level's
`other`), then `other`, at most MAX_SERIES drawn (the CSV has every row). Time buckets the store
found empty are filled: 0 for count and unique, a gap for the other measures (no value).
"""

from __future__ import annotations

from typing import Any

from obshub.events import format_ts, parse_ts
from obshub.web.charts import series_chart

__all__ = ["MAX_SERIES", "panel_view"]

MAX_SERIES = 20  # lines a chart stays readable with; the table has as many columns


def _series(j: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if not j["group_by"]:
        return [("total", j["total"])]
    out: list[tuple[str, dict[str, Any]]] = []
    for g in j["groups"]:
        if "groups" in g:
            out += [(f"{g['key']} / {h['key']}", h) for h in g["groups"]]
            if g["other"]["count"]:
                out.append((f"{g['key']} / other", g["other"]))
        else:
            out.append((str(g["key"]), g))
    if j["other"]["count"]:
        out.append(("other", j["other"]))
    return out


def panel_view(j: dict[str, Any], chart: str) -> dict[str, Any]:
    """The aggregate JSON -> {"chart", "columns", "rows", "truncated", "measure", "empty"}."""
    named = _series(j)
    truncated = len(named) > MAX_SERIES
    named = named[:MAX_SERIES]
    measure = j["measure"]
    if not j["interval_s"]:  # one number per group: bars by group
        labels = [name for name, _ in named]
        values = [b["value"] for _, b in named]
        return {
            "chart": series_chart(labels, [(measure, values)], "bar"),
            "columns": ["group", "count", measure],
            "rows": [{"t": None, "cells": [name, b["count"], b["value"]]} for name, b in named],
            "truncated": truncated,
            "measure": measure,
            "empty": j["total"]["count"] == 0,
        }
    step = j["interval_s"] * 1_000_000
    start, end = parse_ts(j["from"]), parse_ts(j["to"])
    times = [format_ts(t) for t in range(start - start % step, end, step)]
    fill = 0 if measure == "count" or measure.startswith("unique") else None
    cols: list[tuple[str, list[Any]]] = []
    for name, b in named:
        at = {p["t"]: p["value"] for p in b["series"]}
        cols.append((name, [at.get(t, fill) for t in times]))
    return {
        "chart": series_chart([t[5:16].replace("T", " ") for t in times], cols, chart),
        "columns": ["t", *(name for name, _ in cols)],
        "rows": [{"t": t, "cells": [t, *(vals[i] for _, vals in cols)]} for i, t in enumerate(times)],
        "truncated": truncated,
        "measure": measure,
        "empty": j["total"]["count"] == 0,
    }

"""An analysis answer (obshub/query/product.py `run`) -> a chart and a table in the shape the
panel macros draw (templates/_panels.html; web/panels.py's `panel_view`), so a tab and a saved
analysis panel on a dashboard look alike. The rows are `product.table`'s, the CSV's rows, with
rates shown as percentages (the CSV keeps the API's fractions).

Charts: Trends a line (or bars) per event or breakdown value; Funnels bars of the share of
step 1 reaching each step, per group; Retention the curve (share returned per period);
Experiments bars of each variant's conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from obshub.query import product
from obshub.web.charts import series_chart
from obshub.web.panels import MAX_SERIES

__all__ = ["analysis_view"]

_RATES = {"from_previous", "from_first", "rate", "difference", "ci95_low", "ci95_high"}  # fractions -> %


def _pct(v: Any) -> Any:
    return None if v is None else round(v * 100, 1)


_HIDDEN = {"z", "reading"}  # in the CSV; a panel's table has no room for them (the tab's card says it)


def _cell(column: str, v: Any) -> Any:
    if column in _RATES:
        return _pct(v)
    if column == "p_value" and v is not None:
        return f"{v:.3g}"  # 3.6e-05, not the table's 3-decimal 0
    return v


def _rows(t: product.Table) -> tuple[list[str], list[dict[str, Any]]]:
    keep = [i for i, c in enumerate(t.columns) if c not in _HIDDEN]
    cols = [f"{t.columns[i]} %" if t.columns[i] in _RATES else t.columns[i] for i in keep]
    rows = [
        {"t": r[0] if t.columns[0] in ("t", "cohort") else None, "cells": [_cell(t.columns[i], r[i]) for i in keep]}
        for r in t.rows
    ]
    return cols, rows


def analysis_view(request: Mapping[str, Any], result: Mapping[str, Any], chart: str = "line") -> dict[str, Any]:
    """{"chart", "columns", "rows", "truncated", "measure", "empty", "table"} (`table`: the
    product.Table behind the rows, for the tab's own layouts)."""
    analysis = request["analysis"]
    t = product.table(request, result)
    cols, rows = _rows(t)
    truncated = False
    if analysis == "series":
        named = product.series_columns(result)
        truncated = len(named) > MAX_SERIES
        labels = [r[0][5:16].replace("T", " ") for r in t.rows]
        series = [(n, [p["count"] for p in pts]) for n, pts in named[:MAX_SERIES]]
        drawn = series_chart(labels, series, chart)
        measure = "unique users" if request.get("unique") else "events"
        empty = not any(v for _, vals in series for v in vals)
    elif analysis == "funnel":
        groups = [("all", result["steps"])]
        if request.get("breakdown"):
            groups = [(product.label(g["value"]), g["steps"]) for g in result.get("breakdown", [])]
            groups += [("other", result["other"]["steps"])] if "other" in result else []
            truncated = len(groups) > MAX_SERIES
        labels = [f"{i}. {s['event']}" for i, s in enumerate(result["steps"], 1)]
        drawn = series_chart(labels, [(n, [_pct(s["from_first"]) for s in st]) for n, st in groups[:MAX_SERIES]], "bar")
        measure = "% of step 1"
        empty = result["steps"][0][f"{result.get('unit', 'user')}s"] == 0
    elif analysis == "retention":
        labels = [f"{result['period']} {c['period']}" for c in result["curve"]]
        drawn = series_chart(labels, [("returned %", [_pct(c["rate"]) for c in result["curve"]])], "line")
        measure = "% returned"
        empty = not result["cohorts"]
    else:
        labels = [product.label(v["value"]) for v in result["variants"]]
        noun = f"{result.get('unit', 'user')}s"
        rates = [_pct(v["converted"] / v[noun]) if v[noun] else None for v in result["variants"]]
        drawn = series_chart(labels, [("conversion %", rates)], "bar")
        measure = "% converted"
        empty = not result["variants"]
    return {
        "chart": drawn,
        "columns": cols,
        "rows": rows,
        "truncated": truncated,
        "measure": measure,
        "empty": empty,
        "table": t,
    }

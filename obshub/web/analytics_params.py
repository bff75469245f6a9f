"""The Analytics tabs' URL <-> an analysis request (obshub/query/product.py): the query string is
the permalink, the request what runs and what a dashboard panel stores. Both ways, so a saved
panel opens back in its tab (`to_query`) and a permalink survives the round trip.

Funnels and Experiments number their steps: `e1`..`e10` the event, `q1`..`q10` its filter (the
form shows the filled steps and one empty row to add a step; an emptied row is dropped). Errors
name the URL's field (`e3`, `window`), never the API body's (`steps[2]`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from obshub.errors import QueryError
from obshub.query import product
from obshub.query.funnels import MAX_STEPS

__all__ = ["TABS", "from_query", "step_events", "tab_url", "to_query"]

# tab (its URL path under /analytics) -> analysis
TABS = {"trends": "series", "funnels": "funnel", "retention": "retention", "experiments": "experiment"}
# Fields with a shape of their own in the URL; every other field of the analysis
# (product.FIELDS: window, order, breakdown, variant, control, period, interval, q) is one URL
# parameter passed through as typed, so a new plain API field needs no change here.
_SHAPED = {
    "funnel": {"steps"},
    "experiment": {"steps"},
    "retention": {"start", "return", "periods", "bounded"},
    "series": {"events", "unique", "top"},
}
_PLAIN = {a: tuple(sorted(product.FIELDS[a] - shaped)) for a, shaped in _SHAPED.items()}
_STEP_KEY = re.compile(r"([eq])([0-9]{1,6})")


def _steps(qp: QueryParams) -> list[dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for k, v in qp.multi_items():
        m = _STEP_KEY.fullmatch(k)
        if not m:
            continue
        n = int(m.group(2))
        if n > MAX_STEPS:
            raise QueryError(f"{k}: at most {MAX_STEPS} steps (e1..e{MAX_STEPS})")
        if n == 0:
            raise QueryError(f"{k}: steps are numbered from 1 (e1..e{MAX_STEPS})")
        if v.strip():
            found.setdefault(n, {})["event" if m.group(1) == "e" else "q"] = v.strip()
    steps = []
    for n in sorted(found):
        if "event" not in found[n]:
            raise QueryError(f"q{n}: a filter needs its step's event (e{n})")
        steps.append(found[n])
    if len(steps) < 2:
        raise QueryError("e2: a funnel needs at least two steps (e1 and e2: events)")
    return steps


def from_query(tab: str, qp: QueryParams) -> dict[str, Any]:
    """The request of a tab's query string (QueryError naming the URL field)."""
    analysis = TABS[tab]
    req: dict[str, Any] = {"analysis": analysis}
    for k in _PLAIN[analysis]:
        if qp.get(k, "").strip():
            req[k] = qp[k].strip()
    if analysis in ("funnel", "experiment"):
        req["steps"] = _steps(qp)
    elif analysis == "retention":
        for k in ("start", "return"):
            step = {"event": qp.get(k, "").strip(), "q": qp.get(f"{k}_q", "").strip()}
            req[k] = {f: v for f, v in step.items() if v}
        req["bounded"] = qp.get("bounded", "1") != "0"
        if qp.get("periods", "").strip():
            req["periods"] = _int(qp["periods"], "periods")
    else:
        req["events"] = [e.strip() for e in qp.getlist("event") if e.strip()]
        req["unique"] = qp.get("unique", "0") == "1"
        if qp.get("top", "").strip():
            req["top"] = _int(qp["top"], "top")
    try:
        return product.check(req, "request")
    except QueryError as e:
        raise QueryError(_url_field(str(e).removeprefix("request."))) from None


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise QueryError(f"{name}: expected an integer, got {raw[:20]!r}") from None


def _url_field(message: str) -> str:
    """`steps[2].q: ...` -> `q3: ...`; `start.event` -> `start`, `return.q` -> `return_q`."""
    m = re.match(r"steps\[([0-9]+)\]\.(event|q)(.*)", message, re.S)
    if m:
        return f"{'e' if m.group(2) == 'event' else 'q'}{int(m.group(1)) + 1}{m.group(3)}"
    m = re.match(r"(start|return)\.(event|q)(.*)", message, re.S)
    if m:
        return f"{m.group(1)}{'_q' if m.group(2) == 'q' else ''}{m.group(3)}"
    return message.replace("events:", "event:", 1) if message.startswith("events:") else message


def to_query(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The query string (pairs, in the form's order) that `from_query` reads back as `request`."""
    analysis = request["analysis"]
    out: list[tuple[str, str]] = []
    if analysis in ("funnel", "experiment"):
        for i, s in enumerate(request["steps"], 1):
            s = {"event": s} if isinstance(s, str) else s
            out.append((f"e{i}", str(s["event"])))
            if s.get("q"):
                out.append((f"q{i}", str(s["q"])))
    elif analysis == "retention":
        for k in ("start", "return"):
            s = request.get(k) or {}
            s = {"event": s} if isinstance(s, str) else s
            if s.get("event"):
                out.append((k, str(s["event"])))
            if s.get("q"):
                out.append((f"{k}_q", str(s["q"])))
        out.append(("bounded", "1" if request.get("bounded", True) else "0"))
        if "periods" in request:
            out.append(("periods", str(request["periods"])))
    else:
        out += [("event", e) for e in request.get("events", [])]
        if request.get("unique"):
            out.append(("unique", "1"))
        if "top" in request:
            out.append(("top", str(request["top"])))
    out += [(k, str(request[k])) for k in _PLAIN[analysis] if request.get(k) not in (None, "")]
    return out


def step_events(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(URL field, event name) of every event the request names: checked to exist by the page."""
    analysis = request["analysis"]
    if analysis in ("funnel", "experiment"):
        return [(f"e{i}", s["event"] if isinstance(s, dict) else s) for i, s in enumerate(request["steps"], 1)]
    if analysis == "retention":
        return [
            (k, s["event"]) for k in ("start", "return") if isinstance(s := request.get(k), dict) and s.get("event")
        ]
    return [("event", e) for e in request.get("events", [])]


def tab_url(request: Mapping[str, Any], time_from: str, time_to: str) -> str:
    """The tab's permalink of a saved analysis over a range (a panel's "Open in Analytics")."""
    tab = next(t for t, a in TABS.items() if a == request["analysis"])
    path = "/analytics" if tab == "trends" else f"/analytics/{tab}"
    return path + "?" + urlencode([*to_query(request), ("from", time_from), ("to", time_to)])

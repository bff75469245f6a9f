"""Dashboards: named grids of panels, each panel one aggregation (obshub/query/aggregate.py) drawn
as a chart and a table, all panels under one shared time range (docs/web.md, "Dashboards").

Stored as Records (both stores, optimistic concurrency): kind "dashboard", key
"<project id>:<slug>", value {"definition": <the JSON document>, "public": <token hash or null>}.
The definition is exactly what `GET /api/v1/dashboards/<slug>` exports and
`POST /api/v1/dashboards` imports (config as code); the publication is state, never exported.

A published dashboard is found from its link by a second record, kind "public-dashboard", key
the SHA-256 of the link's token (192 random bits; the token itself is stored nowhere), value
{"project_id", "slug"}. Revoking or re-publishing deletes that record: the old link is a 404.

A panel's `source` says where its numbers come from: "events" (an aggregation over stored
events, `request` its parameters) or "metric" (a defined metric's stored hourly or daily rollup
series, obshub/query/metrics.py; `request` {"metric", "interval", "group"}); both give the
aggregate JSON shape (`panel_data`), so the web draws them alike. Or "analytics": a product
analysis saved from the Analytics page (obshub/query/product.py; `request` its API body
without the range plus `analysis`), whose `panel_data` is that analysis' API answer.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from obshub.auth import hash_token
from obshub.errors import Conflict, NotFound, QueryError
from obshub.events import format_ts, now_us
from obshub.query import aggregate, metrics, product
from obshub.query.metrics import OTHER, MetricDef
from obshub.store.base import ROLLUP_INTERVALS, AggregateRequest, Project, Record, Store

__all__ = [
    "CHARTS",
    "KIND",
    "MAX_DASHBOARDS",
    "MAX_PANELS",
    "PUBLIC_KIND",
    "REFRESH_S",
    "Dashboard",
    "Panel",
    "add_panel",
    "delete_dashboard",
    "find_public",
    "get_dashboard",
    "list_dashboards",
    "panel_data",
    "panel_request",
    "parse_dashboard",
    "publish",
    "put_dashboard",
    "remove_panel",
    "revoke",
    "slugify",
]

KIND = "dashboard"
PUBLIC_KIND = "public-dashboard"
MAX_DASHBOARDS = 200  # per project: a list page, not a database
MAX_PANELS = 24  # one page of panels, each one aggregation: a page load costs at most 24 queries
MAX_TITLE = 120
CHARTS = ("line", "bar")
SOURCES = ("events", "metric", "analytics")  # an aggregation, a metric's rollups, a product analysis
REFRESH_S = (0, 30, 60, 300, 900)  # auto-refresh choices; 0: off
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_PANEL_KEYS = {"title", "chart", "source", "request"}
_REQUEST_KEYS = ("q", "measure", "group_by", "top", "interval")  # the range is the dashboard's
_METRIC_KEYS = ("metric", "interval", "group")  # source "metric": interval hour|day; group a name or "*"
ALL_GROUPS = "*"
_DOC_KEYS = {"slug", "title", "time", "refresh_s", "panels"}
_TOKEN_BYTES = 24  # 192 bits: unguessable (the issue asks at least 128)


@dataclass(frozen=True)
class Panel:
    title: str
    chart: str  # one of CHARTS
    request: dict[str, Any]  # aggregate parameters but the range: q, measure, group_by, top, interval
    source: str = "events"

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "chart": self.chart, "source": self.source, "request": dict(self.request)}


@dataclass(frozen=True)
class Dashboard:
    slug: str
    title: str
    time_from: str  # the default shared range, as typed ("-24h", RFC 3339)
    time_to: str  # "" is now
    refresh_s: int  # 0: off
    panels: tuple[Panel, ...]
    public: bool = False  # published (the token's hash is in the record, never here)

    def to_json(self) -> dict[str, Any]:
        """The exported document (`public` left out: a link is state, not configuration)."""
        return {
            "slug": self.slug,
            "title": self.title,
            "time": {"from": self.time_from, "to": self.time_to},
            "refresh_s": self.refresh_s,
            "panels": [p.to_json() for p in self.panels],
        }


def slugify(name: str) -> str:
    """A dashboard name -> its slug: lower-case ASCII letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")[:64].strip("-")
    if not slug:
        raise QueryError("dashboard: a name needs at least one letter or digit")
    return slug


def _text(value: Any, name: str, max_len: int = MAX_TITLE, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise QueryError(f"{name}: expected a {'non-empty ' if required else ''}string")
    if len(value) > max_len:
        raise QueryError(f"{name}: at most {max_len} characters")
    return value.strip()


def panel_request(params: Mapping[str, Any], time_from: str, time_to: str) -> AggregateRequest:
    """The aggregation of a panel's parameters over the dashboard's range (QueryError naming the
    parameter)."""
    return aggregate.parse_request({**params, "from": time_from or None, "to": time_to or None})


def _panel(raw: Any, where: str, time_from: str, time_to: str) -> Panel:
    if not isinstance(raw, dict):
        raise QueryError(f"{where}: expected an object")
    unknown = set(raw) - _PANEL_KEYS
    if unknown:
        raise QueryError(f"{where}.{sorted(unknown)[0][:40]}: unknown field")
    title = _text(raw.get("title"), f"{where}.title")
    chart = raw.get("chart", "line")
    if chart not in CHARTS:
        raise QueryError(f"{where}.chart: expected one of {', '.join(CHARTS)}")
    source = raw.get("source", "events")
    if source not in SOURCES:
        raise QueryError(f"{where}.source: expected one of {', '.join(SOURCES)}")
    req = raw.get("request", {})
    if not isinstance(req, dict):
        raise QueryError(f"{where}.request: expected an object of aggregate parameters")
    if source == "metric":
        return Panel(title, str(chart), _metric_request(req, f"{where}.request"), "metric")
    if source == "analytics":
        return Panel(title, str(chart), product.check(req, f"{where}.request"), "analytics")
    unknown = set(req) - set(_REQUEST_KEYS)
    if unknown:
        raise QueryError(f"{where}.request.{sorted(unknown)[0][:40]}: unknown parameter (the range is the dashboard's)")
    params = {k: req[k] for k in _REQUEST_KEYS if req.get(k) not in (None, "", [])}
    try:
        panel_request(params, time_from, time_to)
    except QueryError as e:
        raise QueryError(f"{where}.request.{e}") from None
    if isinstance(params.get("top"), str):
        params["top"] = int(params["top"])  # a web form's "5": exported as the number it is
    return Panel(title, str(chart), params, str(source))


def _metric_request(req: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A metric panel's request: the metric's name (looked up when drawn: it may be defined
    later), `interval` hour (default) or day, `group` absent (the total), a group's name or `*`
    (every group and `other`)."""
    unknown = set(req) - set(_METRIC_KEYS)
    if unknown:
        raise QueryError(f"{where}.{sorted(unknown)[0][:40]}: unknown parameter (expected {', '.join(_METRIC_KEYS)})")
    name = req.get("metric")
    if not isinstance(name, str) or not metrics.NAME_RE.fullmatch(name):
        raise QueryError(f"{where}.metric: expected a metric's name")
    interval = req.get("interval")
    interval = "hour" if interval in (None, "") else interval  # empty: as absent (web forms)
    if not isinstance(interval, str) or interval not in ROLLUP_INTERVALS:
        raise QueryError(f"{where}.interval: expected hour or day")
    out: dict[str, Any] = {"metric": name, "interval": interval}
    group = req.get("group")
    if group not in (None, ""):
        if not isinstance(group, str) or len(group) > metrics.MAX_GROUP_CHARS + 8:
            raise QueryError(f"{where}.group: expected a group's name or * (every group)")
        out["group"] = group
    return out


def _refresh(raw: Any) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw not in REFRESH_S:
        raise QueryError(f"refresh_s: expected one of {', '.join(map(str, REFRESH_S))}")
    return raw


def parse_dashboard(body: Any) -> Dashboard:
    """The imported JSON document -> a Dashboard; QueryError naming the field (`panels[2].chart`)."""
    if not isinstance(body, dict):
        raise QueryError("body: expected a JSON object")
    unknown = set(body) - _DOC_KEYS
    if unknown:
        raise QueryError(f"{sorted(unknown)[0][:40]}: unknown field")
    title = _text(body.get("title"), "title")
    slug = body.get("slug")
    if "slug" not in body:
        try:
            slug = slugify(title)
        except QueryError:
            raise QueryError("slug: cannot be made from this title (no letter or digit): give one") from None
    elif not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise QueryError("slug: expected 1-64 lower-case letters, digits and dashes, starting with a letter or digit")
    tm = body.get("time", {})
    if not isinstance(tm, dict) or set(tm) - {"from", "to"}:
        raise QueryError('time: expected {"from": "-24h", "to": ""}')
    time_from = _text(tm.get("from", aggregate.DEFAULT_FROM), "time.from", 64)
    time_to = _text(tm.get("to", ""), "time.to", 64, required=False)
    try:
        panel_request({}, time_from, time_to)
    except QueryError as e:
        raise QueryError(f"time.{e}") from None
    panels = body.get("panels", [])
    if not isinstance(panels, list):
        raise QueryError("panels: expected a list")
    if len(panels) > MAX_PANELS:
        raise QueryError(f"panels: at most {MAX_PANELS}")
    return Dashboard(
        slug=slug,
        title=title,
        time_from=time_from,
        time_to=time_to,
        refresh_s=_refresh(body.get("refresh_s", 0)),
        panels=tuple(_panel(p, f"panels[{i}]", time_from, time_to) for i, p in enumerate(panels)),
    )


# ------------------------------------------------------------------------------------ storage


def _key(project_id: int, slug: str) -> str:
    return f"{project_id}:{slug}"


def _from_record(rec: Record) -> Dashboard | None:
    try:
        d = parse_dashboard(rec.value.get("definition"))
    except QueryError:
        return None  # written by a later version under other rules: not shown half-read
    return Dashboard(d.slug, d.title, d.time_from, d.time_to, d.refresh_s, d.panels, bool(rec.value.get("public")))


def list_dashboards(store: Store, project_id: int) -> list[Dashboard]:
    out = [_from_record(r) for r in store.list_records(KIND, f"{project_id}:")]
    return sorted((d for d in out if d is not None), key=lambda d: d.title.lower())


def _get(store: Store, project_id: int, slug: str) -> tuple[Dashboard, Record]:
    rec = store.get_record(KIND, _key(project_id, slug)) if _SLUG.fullmatch(slug) else None
    d = _from_record(rec) if rec is not None else None
    if rec is None or d is None:
        raise NotFound(f"no dashboard {slug!r}")
    return d, rec


def get_dashboard(store: Store, project_id: int, slug: str) -> Dashboard:
    return _get(store, project_id, slug)[0]


def put_dashboard(store: Store, project_id: int, body: Any) -> tuple[Dashboard, bool]:
    """Create or replace (import) a dashboard from its JSON document; a published one stays
    published at the same link. Returns (it, created?)."""
    d = parse_dashboard(body)
    rec = store.get_record(KIND, _key(project_id, d.slug))
    if rec is None and len(store.list_records(KIND, f"{project_id}:")) >= MAX_DASHBOARDS:
        raise Conflict(f"this project has {MAX_DASHBOARDS} dashboards, the most it may: delete one first")
    public = rec.value.get("public") if rec is not None else None
    store.put_record(
        KIND,
        _key(project_id, d.slug),
        {"definition": d.to_json(), "public": public},
        version=rec.version if rec is not None else 0,
    )
    return Dashboard(d.slug, d.title, d.time_from, d.time_to, d.refresh_s, d.panels, bool(public)), rec is None


def add_panel(store: Store, project_id: int, name: str, panel: dict[str, Any], time_from: str = "") -> Dashboard:
    """Append a panel to the dashboard called `name` (its slug), creating the dashboard (with
    `time_from` as its default range when given: an analysis saved over -30d)."""
    slug = slugify(name)
    rec = store.get_record(KIND, _key(project_id, slug))
    if rec is None:
        doc: dict[str, Any] = {"slug": slug, "title": _text(name, "dashboard"), "panels": []}
        if time_from:
            doc["time"] = {"from": time_from, "to": ""}
    else:
        doc = dict(rec.value.get("definition") or {})
    doc["panels"] = [*doc.get("panels", []), panel]
    d = parse_dashboard(doc)
    if rec is None and len(store.list_records(KIND, f"{project_id}:")) >= MAX_DASHBOARDS:
        raise Conflict(f"this project has {MAX_DASHBOARDS} dashboards, the most it may: delete one first")
    public = rec.value.get("public") if rec is not None else None
    store.put_record(
        KIND, _key(project_id, slug), {"definition": d.to_json(), "public": public}, rec.version if rec else 0
    )
    return d


def remove_panel(store: Store, project_id: int, slug: str, index: int) -> Dashboard:
    d, rec = _get(store, project_id, slug)
    if not 0 <= index < len(d.panels):
        raise NotFound(f"dashboard {slug!r} has no panel {index + 1}")
    doc = d.to_json()
    del doc["panels"][index]
    store.put_record(KIND, rec.key, {**rec.value, "definition": doc}, version=rec.version)
    return get_dashboard(store, project_id, slug)


def delete_dashboard(store: Store, project_id: int, slug: str) -> None:
    _, rec = _get(store, project_id, slug)
    if rec.value.get("public"):
        store.delete_record(PUBLIC_KIND, str(rec.value["public"]))
    if not store.delete_record(KIND, rec.key):
        raise NotFound(f"no dashboard {slug!r}")


def publish(store: Store, project_id: int, slug: str) -> str:
    """A new public link's token (returned once: only its hash is kept); an older link of the
    dashboard stops working."""
    _, rec = _get(store, project_id, slug)
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    digest = hash_token(token)
    store.put_record(PUBLIC_KIND, digest, {"project_id": project_id, "slug": slug}, version=0)
    store.put_record(KIND, rec.key, {**rec.value, "public": digest}, version=rec.version)
    if rec.value.get("public"):
        store.delete_record(PUBLIC_KIND, str(rec.value["public"]))
    return token


def revoke(store: Store, project_id: int, slug: str) -> bool:
    """End the public link; False when the dashboard was not published."""
    _, rec = _get(store, project_id, slug)
    old = rec.value.get("public")
    if not old:
        return False
    store.delete_record(PUBLIC_KIND, str(old))
    store.put_record(KIND, rec.key, {**rec.value, "public": None}, version=rec.version)
    return True


def find_public(store: Store, token: str) -> tuple[int, Dashboard] | None:
    """(project id, dashboard) of a public link's token, None for an unknown or revoked one."""
    if not 20 <= len(token) <= 64:
        return None  # no store read for what cannot be a token
    digest = hash_token(token)
    link = store.get_record(PUBLIC_KIND, digest)
    if link is None:
        return None
    pid, slug = link.value.get("project_id"), link.value.get("slug")
    if not isinstance(pid, int) or not isinstance(slug, str):
        return None
    try:
        d, rec = _get(store, pid, slug)
    except NotFound:
        return None
    if rec.value.get("public") != digest:
        return None  # re-published or revoked since (a leftover link record)
    return pid, d


def panel_data(
    store: Store,
    project_id: int,
    panel: Panel,
    time_from: str,
    time_to: str,
    now: int | None = None,
    config: Sequence[MetricDef] = (),
) -> dict[str, Any]:
    """The panel's numbers over the range as GET /api/v1/aggregate's JSON: for "events" the same
    computation with the panel's parameters and this range; for "metric" the stored rollups
    (`config`: the hub's [[metrics]]); for "analytics" the analysis' API answer. QueryError
    (NotFound: an unknown metric) for the page."""
    if panel.source == "analytics":
        return product.run(store, project_id, panel.request, time_from, time_to, now_us() if now is None else now)
    if panel.source == "metric":
        project = store.get_project_by_id(project_id) or Project(project_id, "", "")  # name: its config metrics
        return _metric_data(store, project, panel.request, time_from, time_to, now, config)
    req = aggregate.parse_request({**panel.request, "from": time_from or None, "to": time_to or None}, now)
    return aggregate.to_json(req, aggregate.aggregate(store, project_id, req))


def _metric_data(
    store: Store,
    project: Project,
    request: Mapping[str, Any],
    time_from: str,
    time_to: str,
    now: int | None,
    config: Sequence[MetricDef],
) -> dict[str, Any]:
    """A metric's rollup series in the aggregate shape: `total` its every-event rows, or with
    `group` the groups (`*`: all, `other` as the aggregation's other). A bucket's count and value
    are the stored ones; the range's own value is not (a day's p95 is no mix of its hours'), so
    `value` of the whole range is null."""
    m = metrics.find(store, project, config, str(request["metric"]))
    group = request.get("group")
    params = {"interval": request["interval"], "from": time_from or aggregate.DEFAULT_FROM, "to": time_to or "now"}
    if group and group != ALL_GROUPS:
        params["group"] = group
    sreq = metrics.parse_series(params, now)
    rows = store.rollup_series(project.id, m.name, sreq.interval, sreq.start, sreq.end, sreq.group)

    def bucket(sel: list[Any]) -> dict[str, Any]:
        series = [{"t": format_ts(r.t), "count": r.count, "value": r.value} for r in sel]
        return {"count": sum(r.count for r in sel), "value": None, "series": series}

    out: dict[str, Any] = {
        "measure": m.measure if m.datasource == "events" else m.name,
        "group_by": [],
        "top": m.max_groups,
        "from": format_ts(sreq.start),
        "to": format_ts(sreq.end),
        "interval_s": ROLLUP_INTERVALS[sreq.interval] // 1_000_000,
        "total": bucket([r for r in rows if r.group == ""]),
    }
    if group and group != ALL_GROUPS:  # one group's rows only: its count says whether any is stored
        out["total"] = {"count": sum(r.count for r in rows), "value": None, "series": []}
    if group:
        names = list(dict.fromkeys(r.group for r in rows if r.group not in ("", OTHER)))
        out["group_by"] = [m.group_by or "group"]
        out["groups"] = [{"key": g, **bucket([r for r in rows if r.group == g])} for g in names]
        out["other"] = bucket([r for r in rows if r.group == OTHER])
    return out

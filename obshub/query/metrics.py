"""Metrics defined from queries (docs/metrics.md): a `[[metrics]]` table of the hub config file
or a `POST /api/v1/metrics` body -> `MetricDef`, the values of one hour or day computed from the
raw events (`compute`, through `Store.aggregate`: one place computes measures), and the stored
rollups read back as series (JSON or CSV). The rollup job (obshub/jobs/rollups.py) decides when
each bucket is computed; this module says what a bucket's value is.

A bucket's value is the measure over the events of that bucket alone (an hour, or a whole UTC
day), never a sum of other buckets: a day's unique users are counted over the day's events, not
added up from its hours (a user active in two hours is one user of the day). With `group_by`,
each bucket keeps its own top `max_groups` values by event count (ties by value) and the rest
as `other`: at most max_groups + 2 rows per bucket, which bounds the table and the Prometheus
series alike.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from obshub.errors import Conflict, FieldError, NotFound, QueryError
from obshub.events import format_ts, now_us
from obshub.query.aggregate import parse_request
from obshub.query.search import parse_query
from obshub.query.times import parse_time
from obshub.settings import parse_tables
from obshub.store.base import ROLLUP_INTERVALS, AggKey, AggregateRequest, Project, Record, RollupRow, Store
from obshub.store.querylang import Node, to_string

__all__ = [
    "DATASOURCES",
    "DEF_KIND",
    "KEYS",
    "MAX_API_METRICS",
    "MAX_GROUPS",
    "MAX_GROUP_CHARS",
    "MAX_SERIES_BUCKETS",
    "NAME_RE",
    "OTHER",
    "STATE_KIND",
    "MetricDef",
    "SeriesRequest",
    "compute",
    "config_metrics",
    "define_metric",
    "delete_metric",
    "find",
    "group_names",
    "parse_metric",
    "parse_series",
    "project_metrics",
    "series_csv",
    "series_json",
    "status",
]

DEF_KIND = "metric-def"  # Record of an API definition: key "<project id>:<name>", {"definition": {...}}
STATE_KIND = "metric-rollup"  # Record of the rollup job's progress per metric (obshub/jobs/rollups.py)
MAX_API_METRICS = 100  # API metrics per project: each costs the rollup job ~8 aggregations a run
MAX_GROUPS = 20  # group cap per bucket: 22 rows per bucket at most (with the total and `other`)
DEFAULT_GROUPS = 10
MAX_SERIES_BUCKETS = 1_500  # a series request: 62 days per hour, 4 years per day
MAX_GROUP_CHARS = 200  # a group's text (also a Prometheus label value and part of an OpenSearch _id)
OTHER = "other"  # the row of a bucket's events outside its top groups (or without the field)
FOREVER = 2**62  # `delete_rollups(before=FOREVER)`: every row
KEYS = (
    "name",
    "project",
    "datasource",
    "query",
    "measure",
    "promql",
    "group_by",
    "max_groups",
    "description",
    "unit",
)
DATASOURCES = ("events", "prometheus")  # where a metric's values come from
MAX_PROMQL_CHARS = 4096
_LABEL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a Prometheus label name (group_by of a PromQL metric)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as alert and check names
_HOUR = ROLLUP_INTERVALS["hour"]


@dataclass(frozen=True)
class MetricDef:
    """One validated metric. `op`/`field`: the measure as `Store.aggregate` takes it."""

    name: str
    project: str
    query: str  # canonical text ("" = every event)
    node: Node | None
    measure: str  # as given, trimmed: "count", "unique(user_id)", "p95(duration_ms)"
    op: str
    field: str | None
    group_by: str | None  # one field: a core field or "attrs.KEY"
    max_groups: int = DEFAULT_GROUPS
    description: str = ""
    unit: str = ""
    source: str = "config"  # config | api
    datasource: str = "events"  # events | prometheus (obshub/jobs/prometheus.py)
    promql: str = ""  # datasource prometheus: the expression (docs/metrics.md#prometheus-as-a-source)
    definition: dict[str, Any] = dataclasses.field(default_factory=dict)  # the keys as given (API: stored, shown)

    def key(self, project_id: int) -> str:
        return f"{project_id}:{self.name}"

    @property
    def fingerprint(self) -> str:
        """What the values depend on: a change (not of description or unit) recomputes them all."""
        what: list[Any] = [self.query, self.op, self.field, self.group_by, self.max_groups]
        if self.datasource != "events":  # unchanged for event metrics: no recompute on upgrade
            what += [self.datasource, self.promql]
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]

    def request(self, start: int, end: int) -> AggregateRequest:
        group_by = (self.group_by,) if self.group_by else ()
        return AggregateRequest(self.node, start, end, self.op, self.field, group_by, self.max_groups)


def _str(raw: Any, key: str, max_len: int) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > max_len:
        raise FieldError(key, f"expected a string of 0-{max_len} characters")
    return raw


def _aggregate_part(params: dict[str, Any], key: str) -> tuple[str, str | None, tuple[str, ...]]:
    """The measure and group_by, checked by the aggregation API's own parser (one place)."""
    try:
        req = parse_request({**params, "from": "0", "to": "now"}, now=_HOUR)
    except QueryError as e:
        text = str(e)
        raise FieldError(key, text.split(": ", 1)[1] if ": " in text else text) from None
    return req.op, req.field, req.group_by


def parse_metric(raw: Any, source: str = "config", project: str | None = None) -> MetricDef:
    """Validate one definition; FieldError naming the key. `project`: the API token's project
    (the body may omit `project`, or repeat it); a config table's default is `default`."""
    if not isinstance(raw, Mapping):
        raise FieldError("body", f"expected an object, got {type(raw).__name__}")
    for key in raw:
        if key not in KEYS:
            raise FieldError(str(key)[:40], f"unknown field (expected {', '.join(KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise FieldError("name", "required: 1-64 characters of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    proj = raw.get("project", "default" if project is None else project)
    if not isinstance(proj, str) or not proj:
        raise FieldError("project", "expected a project name")
    if project is not None and proj != project:
        raise FieldError("project", f"a metric is created in the token's project ({project!r}); omit the field")
    datasource = raw.get("datasource", "events")
    if datasource not in DATASOURCES:
        raise FieldError("datasource", f"expected one of {', '.join(DATASOURCES)}, got {str(datasource)[:40]!r}")
    if datasource == "prometheus":
        return _prometheus_metric(raw, name, proj, source)
    if "promql" in raw:
        raise FieldError("promql", 'only with datasource = "prometheus"')
    q = raw.get("query")
    if q is not None and not isinstance(q, str):
        raise FieldError("query", "expected a query string, e.g. name:signup")
    try:
        node = parse_query(q)
    except QueryError as e:
        raise FieldError("query", str(e)) from None
    measure = raw.get("measure", "count")
    if not isinstance(measure, str):
        raise FieldError(
            "measure", f"expected a string like count, unique(user_id) or p95(duration_ms), got {measure!r}"
        )
    op, fld, _ = _aggregate_part({"measure": measure}, "measure")
    group_by = raw.get("group_by")
    if group_by is not None and (not isinstance(group_by, str) or "," in group_by or not group_by.strip()):
        raise FieldError("group_by", "expected one field name, e.g. plan or service")
    by = _aggregate_part({"group_by": group_by}, "group_by")[2] if group_by is not None else ()
    max_groups = raw.get("max_groups", DEFAULT_GROUPS)
    if isinstance(max_groups, bool) or not isinstance(max_groups, int) or not 1 <= max_groups <= MAX_GROUPS:
        raise FieldError("max_groups", f"expected an integer from 1 to {MAX_GROUPS}, got {max_groups!r}")
    return MetricDef(
        name=name,
        project=proj,
        query=to_string(node) if node is not None else "",
        node=node,
        measure=measure.strip(),
        op=op,
        field=fld,
        group_by=by[0] if by else None,
        max_groups=max_groups,
        description=_str(raw.get("description"), "description", 1024),
        unit=_str(raw.get("unit"), "unit", 32),
        source=source,
        definition={k: raw[k] for k in KEYS if k in raw and k != "project"},
    )


def _prometheus_metric(raw: Mapping[str, Any], name: str, project: str, source: str) -> MetricDef:
    """A metric whose values a PromQL expression gives (obshub/jobs/prometheus.py); group_by is a
    label of its result."""
    for key in ("query", "measure"):
        if key in raw:
            raise FieldError(
                key, 'not used with datasource = "prometheus" (the promql expression says what is measured)'
            )
    promql = raw.get("promql")
    if not isinstance(promql, str) or not promql.strip() or len(promql) > MAX_PROMQL_CHARS:
        raise FieldError(
            "promql", f'required with datasource = "prometheus": a PromQL expression of 1-{MAX_PROMQL_CHARS} characters'
        )
    group_by = raw.get("group_by")
    if group_by is not None and (not isinstance(group_by, str) or not _LABEL_RE.fullmatch(group_by)):
        raise FieldError("group_by", "expected a label name of the expression's result, e.g. service")
    max_groups = raw.get("max_groups", DEFAULT_GROUPS)
    if isinstance(max_groups, bool) or not isinstance(max_groups, int) or not 1 <= max_groups <= MAX_GROUPS:
        raise FieldError("max_groups", f"expected an integer from 1 to {MAX_GROUPS}, got {max_groups!r}")
    return MetricDef(
        name=name,
        project=project,
        query="",
        node=None,
        measure="",
        op="",
        field=None,
        group_by=group_by,
        max_groups=max_groups,
        description=_str(raw.get("description"), "description", 1024),
        unit=_str(raw.get("unit"), "unit", 32),
        source=source,
        datasource="prometheus",
        promql=promql.strip(),
        definition={k: raw[k] for k in KEYS if k in raw and k != "project"},
    )


def config_metrics(raw: Sequence[Mapping[str, Any]]) -> list[MetricDef]:
    """`Settings.metrics` -> MetricDefs; a bad table stops the hub at start, naming it and the key."""
    return parse_tables("metrics", raw, parse_metric, lambda m: (m.project, m.name))


def _stored(store: Store, project: Project) -> dict[str, tuple[MetricDef, Record]]:
    out: dict[str, tuple[MetricDef, Record]] = {}
    for rec in store.list_records(DEF_KIND, f"{project.id}:"):
        try:
            m = parse_metric(rec.value.get("definition"), "api", project.name)
        except FieldError:
            continue  # written by a later version under other rules: never computed half-read
        out[m.name] = (m, rec)
    return out


def project_metrics(store: Store, project: Project, config: Sequence[MetricDef]) -> list[MetricDef]:
    """The project's config-file metrics, then its API metrics not shadowed by a config name."""
    mine = [m for m in config if m.project == project.name]
    names = {m.name for m in mine}
    return mine + [m for name, (m, _) in sorted(_stored(store, project).items()) if name not in names]


def define_metric(store: Store, project: Project, config: Sequence[MetricDef], body: Any) -> tuple[MetricDef, bool]:
    """POST: create or replace an API metric. Returns (the metric, created?). A replaced one whose
    values depend on something changed is recomputed from the events by the next rollup run."""
    try:
        m = parse_metric(body, "api", project.name)
    except FieldError as e:
        raise QueryError(str(e)) from None
    if any(c.project == project.name and c.name == m.name for c in config):
        raise Conflict(f"name: metric {m.name!r} is declared in the hub config file; change it there")
    stored = _stored(store, project)
    old = stored.get(m.name)
    if old is None and len(stored) >= MAX_API_METRICS:
        raise Conflict(f"project {project.name!r} has {len(stored)} metrics, the most the API allows: delete one first")
    store.put_record(DEF_KIND, m.key(project.id), {"definition": m.definition}, version=old[1].version if old else 0)
    return m, old is None


def delete_metric(store: Store, project: Project, config: Sequence[MetricDef], name: str) -> None:
    """DELETE: the API metric, its rollups and the job's progress record."""
    if any(c.project == project.name and c.name == name for c in config):
        raise Conflict(f"metric {name!r} is declared in the hub config file; remove it there")
    found = _stored(store, project).get(name)
    if found is None or not store.delete_record(DEF_KIND, found[1].key):
        raise NotFound(f"no metric named {name!r}")
    store.delete_record(STATE_KIND, found[0].key(project.id))
    store.delete_rollups(FOREVER, project.id, name)


# -- computing one bucket ----------------------------------------------------------------------


def group_names(keys: Sequence[AggKey]) -> list[str]:
    """A bucket's top group keys as row names: text as is, numbers as JSON (500 -> "500"), cut
    to MAX_GROUP_CHARS. A name that would repeat another (the text "other", the text "500" beside
    the number 500, two long values alike in their first 200 characters) gets "~2", "~3"...: two
    groups never share a row."""
    used = {"", OTHER}
    out: list[str] = []
    for k in keys:
        base = (k if isinstance(k, str) else json.dumps(k))[:MAX_GROUP_CHARS]
        name, i = base, 2
        while name in used:
            name, i = f"{base}~{i}", i + 1
        used.add(name)
        out.append(name)
    return out


def compute(store: Store, project_id: int, m: MetricDef, interval: str, t: int) -> list[RollupRow]:
    """The rows of one bucket, from the events of [t, t + interval) only: the total (group "",
    always, 0 or null when empty), each top group, and `other` when it has events."""
    root = store.aggregate(project_id, m.request(t, t + ROLLUP_INTERVALS[interval]))
    rows = [RollupRow(m.name, "", interval, t, root.count, root.value)]
    groups = [g for g in root.groups if g.key is not None]  # (a group's key is never None)
    for g, name in zip(groups, group_names([g.key for g in groups if g.key is not None]), strict=True):
        rows.append(RollupRow(m.name, name, interval, t, g.count, g.value))
    if root.other is not None and root.other.count:
        rows.append(RollupRow(m.name, OTHER, interval, t, root.other.count, root.other.value))
    return rows


# -- reading: GET /api/v1/metrics and /api/v1/metrics/{name}/series ----------------------------


def _time(us: Any) -> str | None:
    return format_ts(int(us)) if isinstance(us, int) and us > 0 else None


def status(store: Store, project: Project, config: Sequence[MetricDef], now: int | None = None) -> list[dict[str, Any]]:
    """Every metric of the project with the rollup job's progress and the current hour's and
    day's values (of every event: group "")."""
    now = now_us() if now is None else now
    out: list[dict[str, Any]] = []
    for m in project_metrics(store, project, config):
        rec = store.get_record(STATE_KIND, m.key(project.id))
        st = rec.value if rec is not None and rec.value.get("fingerprint") == m.fingerprint else {}
        current: dict[str, Any] = {}
        for window, interval in (("1h", "hour"), ("1d", "day")):
            step = ROLLUP_INTERVALS[interval]
            t = now - now % step
            rows = store.rollup_series(project.id, m.name, interval, t, t + step, "") if st else []
            current[window] = rows[0].value if rows else None
        done_to, start = st.get("done_to"), st.get("from")
        out.append(
            {
                "name": m.name,
                "datasource": m.datasource,
                "promql": m.promql or None,
                "query": m.query,
                "measure": m.measure,
                "group_by": m.group_by,
                "max_groups": m.max_groups,
                "description": m.description,
                "unit": m.unit,
                "source": m.source,
                "rollup": {
                    "from": _time(start),
                    "computed_to": _time(done_to),
                    "computed_at": _time(st.get("computed_at")),
                    "backfilled": bool(st) and isinstance(done_to, int) and done_to >= now - now % _HOUR,
                    "last_error": st.get("last_error") or None,  # the last run's failure (Prometheus down...)
                },
                "current": current,
            }
        )
    return out


@dataclass(frozen=True)
class SeriesRequest:
    interval: str
    start: int  # aligned to the interval
    end: int
    group: str | None
    format: str


def parse_series(params: Mapping[str, str], now: int | None = None) -> SeriesRequest:
    """interval=hour|day, from/to (default the last 24 h per hour, 30 days per day), group, format;
    QueryError naming the parameter."""
    unknown = set(params) - {"interval", "from", "to", "group", "format"}
    if unknown:
        raise QueryError(f"{sorted(unknown)[0][:40]}: unknown parameter")
    now = now_us() if now is None else now
    interval = params.get("interval") or "hour"
    if interval not in ROLLUP_INTERVALS:
        raise QueryError("interval: expected hour or day")
    step = ROLLUP_INTERVALS[interval]
    start = parse_time(params.get("from") or ("-24h" if interval == "hour" else "-30d"), "from", now)
    end = parse_time(params.get("to") or "now", "to", now)
    assert start is not None and end is not None
    if end <= start:
        raise QueryError("to: must be after from")
    start -= start % step  # the bucket holding `from`
    buckets = (end - start + step - 1) // step
    if buckets > MAX_SERIES_BUCKETS:
        raise QueryError(f"from: {buckets} {interval}s exceeds {MAX_SERIES_BUCKETS}; shorten the range")
    group = params.get("group") or None  # empty: as absent (the web forms send empty fields)
    if group is not None and len(group) > MAX_GROUP_CHARS + 8:
        raise QueryError(f"group: longer than any group's name ({MAX_GROUP_CHARS} characters)")
    fmt = params.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise QueryError("format: expected json or csv")
    return SeriesRequest(interval, start, end, group, fmt)


def find(store: Store, project: Project, config: Sequence[MetricDef], name: str) -> MetricDef:
    for m in project_metrics(store, project, config):
        if m.name == name:
            return m
    raise NotFound(f"no metric named {name!r}")


def _point(r: RollupRow) -> dict[str, Any]:
    return {"t": format_ts(r.t), "count": r.count, "value": r.value}


def series_json(m: MetricDef, req: SeriesRequest, rows: Sequence[RollupRow]) -> dict[str, Any]:
    """The total series (every event) and each group's, their stored buckets oldest first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    total: list[dict[str, Any]] = []
    for r in rows:
        (total if r.group == "" else groups.setdefault(r.group, [])).append(_point(r))
    return {
        "metric": m.name,
        "measure": m.measure,
        "unit": m.unit,
        "interval": req.interval,
        "from": format_ts(req.start),
        "to": format_ts(req.end),
        "total": total,
        "groups": [{"group": g, "series": s} for g, s in groups.items()],
    }


_FORMULA = tuple("=+-@\t\r")


def _cell(v: Any) -> str:
    s = "" if v is None else str(v)
    return "'" + s if isinstance(v, str) and s.startswith(_FORMULA) else s  # a spreadsheet runs no group


def series_csv(rows: Sequence[RollupRow]) -> str:
    """One line per stored bucket: row (total, group, other), group, t, count, value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "group", "t", "count", "value"])
    for r in sorted(rows, key=lambda r: (r.group != "", r.group == OTHER, r.group, r.t)):
        kind = "total" if r.group == "" else "other" if r.group == OTHER else "group"
        w.writerow([kind, _cell(r.group), format_ts(r.t), r.count, _cell(r.value)])
    return buf.getvalue()

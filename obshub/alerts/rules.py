"""Alert rules from outside: a `[[alerts]]` table of the hub config file or a `POST
/api/v1/alerts` body -> `Rule`, or a FieldError naming the field (docs/alerting.md, "Rules").

One dataclass for every kind: the kinds share most keys (name, labels, annotation, notify,
timing) and differ in a few, which `KIND_KEYS` lists; a key of another kind is refused rather
than ignored, so a typo never silently changes what a rule watches."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from obshub.alerts.model import Route
from obshub.errors import FieldError, QueryError
from obshub.settings import parse_tables
from obshub.store.base import Aggregate
from obshub.store.querylang import And, Field, Node, Not, Or, QuerySyntaxError, level_values, parse, to_string, ts_value

__all__ = [
    "KINDS",
    "MAX_API_RULES",
    "Rule",
    "config_rules",
    "notifier_names",
    "parse_duration",
    "parse_rule",
]

KINDS = ("error", "check", "threshold", "absence", "metric")
MAX_API_RULES = 1_000  # API rules per project: each is evaluated every alert_interval_s
MAX_LABELS = 20
MAX_LABEL_VALUE = 256
MAX_ANNOTATION = 4096
MAX_WINDOW_S = 7 * 86_400  # a window is read whole every pass: a week at most
MIN_WINDOW_S = 10
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as check names: a label value, a URL segment
_LABEL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # Prometheus label names
_ATTR_RE = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@-]{0,127}")  # what the query language admits
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
# Labels the engine sets itself (model.Alert): a rule may not override them.
RESERVED_LABELS = frozenset(("alertname", "project", "group_id", "check"))

COMMON = ("name", "project", "kind", "labels", "annotation", "notify", "group_wait", "repeat_interval", "send_resolved")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "error": ("when", "threshold", "measure", "window", "group", "query"),
    "check": ("when", "check", "failures", "successes", "days"),
    "threshold": ("query", "measure", "window", "op", "threshold", "for"),
    "absence": ("query", "window"),
    # A defined metric's stored value (docs/metrics.md) over the current or the previous hour or day.
    "metric": ("metric", "window", "bucket", "group", "op", "threshold", "for"),
}
METRIC_WINDOWS = {"1h": 3600.0, "1d": 86_400.0}  # a rollup bucket: obshub.store.base.ROLLUP_INTERVALS
WHEN = {"error": ("new", "regression", "frequency"), "check": ("down", "tls_expiry")}


@dataclass(frozen=True)
class Rule:
    """One validated rule. `measure`: count | users | avg | max | p95 (`attr` names the
    attribute of the last three). Durations are seconds."""

    name: str
    project: str
    kind: str  # one of KINDS
    when: str = ""  # error: new | regression | frequency; check: down | tls_expiry
    query: str = ""  # canonical text (querylang.to_string of what was parsed)
    node: Node | None = None
    group: str = ""  # error frequency: one group id; metric: one group's row ("" the total)
    metric: str = ""  # metric rules: the defined metric's name
    bucket: str = "current"  # metric rules: current | previous (the last complete hour or day)
    check: str = ""  # check rules: one check's name; "" = every check of the project
    measure: str = "count"
    attr: str = ""
    window_s: float = 300.0
    op: str = ">"
    threshold: float = 0.0
    for_s: float = 0.0
    failures: int = 2
    successes: int = 1
    days: float = 14.0
    labels: dict[str, str] = field(default_factory=dict)
    annotation: str = ""
    notify: tuple[str, ...] = ()
    group_wait_s: float = 30.0
    repeat_interval_s: float = 4 * 3600.0
    send_resolved: bool = True
    source: str = "config"  # config | api
    definition: dict[str, Any] = field(default_factory=dict)  # the keys as given (API: stored, shown)

    def key(self, project_id: int) -> str:
        """The record key of the rule (and prefix of its state's): "<project id>:<name>"."""
        return f"{project_id}:{self.name}"

    def route(self, muted_until: int | None = None) -> Route:
        return Route(self.notify, self.group_wait_s, self.repeat_interval_s, self.send_resolved, muted_until)

    def labels_for(self, project: str, instance: str = "") -> dict[str, str]:
        """alertname, project, the rule's labels, then the instance's (group_id or check)."""
        out = {"alertname": self.name, "project": project, **self.labels}
        if instance:
            out["group_id" if self.kind == "error" else "check"] = instance
        return out

    def aggregate(self) -> Aggregate:
        """What a threshold or absence rule measures over its window (Store.aggregates)."""
        return Aggregate(self.node, "count" if self.kind == "absence" else self.measure, self.attr)


def parse_duration(raw: Any, key: str, lo: float = 0.0, hi: float = MAX_WINDOW_S) -> float:
    """ "30s", "5m", "2h", "1d", "1h30m" or a number of seconds -> seconds in [lo, hi]."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        secs = float(raw)
    elif isinstance(raw, str) and raw.strip():
        text = raw.strip().replace(" ", "")
        parts = _DURATION_RE.findall(text)
        if "".join(n + u for n, u in parts) != text:
            raise FieldError(key, f"expected a duration like 30s, 5m, 2h or 1d, got {raw!r}")
        secs = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise FieldError(key, f"expected a duration like 30s, 5m, 2h or 1d, got {raw!r}")
    if not math.isfinite(secs) or not lo <= secs <= hi:
        raise FieldError(key, f"{raw!r} is not between {lo:g} s and {hi:g} s")
    return secs


def _number(raw: Any, key: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise FieldError(key, f"expected a number, got {raw!r}")
    return float(raw)


def _int(raw: Any, key: str, lo: int, hi: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise FieldError(key, f"expected an integer from {lo} to {hi}, got {raw!r}")
    return raw


def _str(raw: Any, key: str, max_len: int, required: bool = False) -> str:
    if raw is None and not required:
        return ""
    if not isinstance(raw, str) or len(raw) > max_len or (required and not raw.strip()):
        raise FieldError(key, f"expected a string of {'1' if required else '0'}-{max_len} characters")
    return raw


def _check_values(node: Node | None) -> None:
    """Values the backends check only when they compile (level names, times): checked now, so
    a rule that parses never fails at evaluation."""
    if node is None:
        return
    if isinstance(node, Field):
        if node.name == "level" and node.op != "prefix":
            level_values(node)
        elif node.name == "ts":
            ts_value(node)
        return
    if isinstance(node, Not):
        _check_values(node.child)
    elif isinstance(node, (And, Or)):
        for child in node.children:
            _check_values(child)


def _query(raw: Any, required: bool) -> tuple[str, Node | None]:
    text = _str(raw, "query", 4096, required)
    try:
        node = parse(text)
        _check_values(node)
    except QuerySyntaxError as e:
        raise FieldError("query", str(e)) from None
    except QueryError as e:
        raise FieldError("query", str(e)) from None
    if node is None and required:
        raise FieldError("query", "required: the events to watch, e.g. service:billing")
    return to_string(node), node


def _measure(raw: Any, kind: str) -> tuple[str, str]:
    """threshold: count | unique(user_id) | avg(attrs.X) | p95(attrs.X) | max(attrs.X);
    error frequency: count | users."""
    m = "count" if raw is None else raw
    if not isinstance(m, str):
        raise FieldError("measure", f"expected a string, got {m!r}")
    if kind == "error":
        if m not in ("count", "users"):
            raise FieldError("measure", f"expected count or users, got {m!r}")
        return m, ""
    if m == "count":
        return m, ""
    if m in ("unique(user_id)", "users"):
        return "users", ""
    found = re.fullmatch(r"(avg|p95|max)\((?:attrs\.)?(.+)\)", m)
    if found is None or not _ATTR_RE.fullmatch(found.group(2)):
        raise FieldError(
            "measure", f"expected count, unique(user_id), avg(attrs.X), p95(attrs.X) or max(attrs.X), got {m!r}"
        )
    return found.group(1), found.group(2)


def _labels(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise FieldError("labels", "expected a table of name = value")
    if len(raw) > MAX_LABELS:
        raise FieldError("labels", f"at most {MAX_LABELS} labels")
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not _LABEL_RE.fullmatch(k):
            raise FieldError(
                f"labels.{k}", "a label name is 1-64 characters of A-Z a-z 0-9 _, not starting with a digit"
            )
        if k in RESERVED_LABELS:
            raise FieldError(f"labels.{k}", f"set by the hub itself ({', '.join(sorted(RESERVED_LABELS))})")
        if not isinstance(v, str) or len(v) > MAX_LABEL_VALUE:
            raise FieldError(f"labels.{k}", f"expected a string of 0-{MAX_LABEL_VALUE} characters")
        out[k] = v
    return out


def _notify(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(n, str) and _NAME_RE.fullmatch(n) for n in raw) or len(raw) > 20:
        raise FieldError("notify", "expected a list of up to 20 notifier names")
    return tuple(dict.fromkeys(raw))


def _when(raw: Any, kind: str) -> str:
    choices = WHEN[kind]
    if raw not in choices:
        raise FieldError("when", f"expected one of {', '.join(choices)}, got {raw!r}")
    return str(raw)


def notifier_names(tables: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """The names of the `[[notifiers]]` tables (validated by obshub/alerts/notify/config.py)."""
    return frozenset(str(t.get("name")) for t in tables if isinstance(t, Mapping))


def parse_rule(
    raw: Any, source: str = "config", project: str | None = None, notifiers: Collection[str] | None = None
) -> Rule:
    """Validate one definition (an `[[alerts]]` table or a POST body). Raises FieldError.
    `project`: the API token's project (the body may omit `project`, or repeat it).
    `notifiers`: the configured notifier names `notify` may use (None: not checked, for rules
    stored before a notifier was removed from the config: they still evaluate)."""
    if not isinstance(raw, Mapping):
        raise FieldError("body", f"expected an object, got {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise FieldError("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    allowed = (*COMMON, *KIND_KEYS[kind])
    for key in raw:
        if key not in allowed:
            raise FieldError(str(key), f"unknown field for kind {kind} (expected {', '.join(allowed)})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise FieldError("name", "required: 1-64 characters of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    proj = raw.get("project", "default" if project is None else project)
    if not isinstance(proj, str) or not proj:
        raise FieldError("project", "expected a project name")
    if project is not None and proj != project:
        raise FieldError("project", f"a rule is created in the token's project ({project!r}); omit the field")
    values: dict[str, Any] = {
        "labels": _labels(raw.get("labels")),
        "annotation": _str(raw.get("annotation"), "annotation", MAX_ANNOTATION),
        "notify": _notify(raw.get("notify")),
        "group_wait_s": parse_duration(raw.get("group_wait", 30), "group_wait", 0, 3600),
        "repeat_interval_s": parse_duration(raw.get("repeat_interval", "4h"), "repeat_interval", 60, MAX_WINDOW_S),
    }
    if notifiers is not None:
        unknown = [n for n in values["notify"] if n not in notifiers]
        if unknown:
            have = ", ".join(sorted(notifiers)) or "none: add [[notifiers]] tables to the config file"
            raise FieldError("notify", f"no notifier named {unknown[0]!r} (configured: {have})")
    send_resolved = raw.get("send_resolved", True)
    if not isinstance(send_resolved, bool):
        raise FieldError("send_resolved", f"expected true or false, got {send_resolved!r}")
    values["send_resolved"] = send_resolved

    def window(default: str) -> float:
        return parse_duration(raw.get("window", default), "window", MIN_WINDOW_S)

    if kind == "error":
        values["when"] = _when(raw.get("when"), kind)
        values["window_s"] = window("5m" if values["when"] == "frequency" else "1h")
        values["query"], values["node"] = _query(raw.get("query"), False)
        values["group"] = _str(raw.get("group"), "group", 128)
        if values["when"] == "frequency":
            values["measure"], _ = _measure(raw.get("measure"), kind)
            if "threshold" not in raw:
                raise FieldError("threshold", "required for when = frequency: alert above this many events (or users)")
            values["threshold"] = _number(raw["threshold"], "threshold")
        else:
            for key in ("threshold", "measure", "group", "query"):
                if key in raw:
                    raise FieldError(key, "only for when = frequency")
    elif kind == "check":
        values["when"] = _when(raw.get("when", "down"), kind)
        values["check"] = _str(raw.get("check"), "check", 64)
        if values["when"] == "down":
            values["failures"] = _int(raw.get("failures", 2), "failures", 1, 100)
            values["successes"] = _int(raw.get("successes", 1), "successes", 1, 100)
            if "days" in raw:
                raise FieldError("days", "only for when = tls_expiry")
        else:
            values["days"] = _number(raw.get("days", 14), "days")
            if not 0 < values["days"] <= 365:
                raise FieldError("days", f"expected a number of days from 0 to 365, got {raw.get('days')!r}")
            for key in ("failures", "successes"):
                if key in raw:
                    raise FieldError(key, "only for when = down")
    elif kind == "threshold":
        values["query"], values["node"] = _query(raw.get("query"), False)
        values["measure"], values["attr"] = _measure(raw.get("measure"), kind)
        values["window_s"] = window("5m")
        op = raw.get("op", ">")
        if op not in (">", "<"):
            raise FieldError("op", f"expected > or <, got {op!r}")
        values["op"] = op
        if "threshold" not in raw:
            raise FieldError("threshold", "required: the value to compare the measure with")
        values["threshold"] = _number(raw["threshold"], "threshold")
        values["for_s"] = parse_duration(raw.get("for", 0), "for", 0, 86_400)
    elif kind == "metric":
        metric = raw.get("metric")
        if not isinstance(metric, str) or not _NAME_RE.fullmatch(metric):
            raise FieldError("metric", "required: the name of a defined metric (GET /api/v1/metrics)")
        values["metric"] = metric
        win = raw.get("window", "1h")
        if win not in METRIC_WINDOWS:
            raise FieldError("window", f"expected 1h or 1d (a metric's hour or UTC day), got {win!r}")
        values["window_s"] = METRIC_WINDOWS[win]
        bucket = raw.get("bucket", "current")
        if bucket not in ("current", "previous"):
            raise FieldError("bucket", f"expected current or previous, got {bucket!r}")
        values["bucket"] = bucket
        values["group"] = _str(raw.get("group"), "group", 208)
        op = raw.get("op", ">")
        if op not in (">", "<"):
            raise FieldError("op", f"expected > or <, got {op!r}")
        values["op"] = op
        if "threshold" not in raw:
            raise FieldError("threshold", "required: the value to compare the metric's value with")
        values["threshold"] = _number(raw["threshold"], "threshold")
        values["for_s"] = parse_duration(raw.get("for", 0), "for", 0, 86_400)
    else:  # absence
        values["query"], values["node"] = _query(raw.get("query"), True)
        values["window_s"] = window("10m")
    definition = {k: v for k, v in raw.items() if k != "project"}
    return Rule(name=name, project=proj, kind=kind, source=source, definition=definition, **values)


def config_rules(raw: Sequence[Mapping[str, Any]], notifiers: Collection[str] | None = None) -> list[Rule]:
    """`Settings.alerts` -> Rules; a bad table stops the hub at start, naming it and the key
    (a `notify` naming no `[[notifiers]]` table included, when `notifiers` is given)."""
    return parse_tables("alerts", raw, lambda t: parse_rule(t, notifiers=notifiers), lambda r: (r.project, r.name))

"""One evaluation of a project's rules, batched: the cost grows with the distinct windows and
checks the rules read, not with the rules (docs/alerting.md, "Evaluation and state").

- threshold and absence rules: one `Store.aggregates` per distinct window, every rule's query
  and measure in it (1,000 rules over 5-minute windows: one read of those 5 minutes);
- error frequency: one `group_stats` per distinct (window, query), every group at once;
- error new and regression: one `get_groups` for the project;
- check rules: the newest results of each check read once, whatever the number of rules on it.

The result is an `Observation` per rule instance; state.py turns them into transitions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from obshub.alerts.rules import Rule
from obshub.errors import ObshubError
from obshub.store.base import ROLLUP_INTERVALS, Aggregate, Project, RollupRow, SearchRequest, Store
from obshub.store.querylang import to_string
from obshub.uptime.model import Check
from obshub.uptime.queries import project_checks, results_query

__all__ = ["Observation", "Outcome", "evaluate_project"]

US = 1_000_000
DAY_US = 86_400 * US
# Check rules read the results of the last two days: older ones decide nothing (a check probes
# at least daily), and the bound keeps a check with no results from walking every event of the
# project (1M events: 0.8 s a check unbounded, 0.03 s bounded).
CHECK_LOOKBACK_US = 2 * DAY_US


@dataclass(frozen=True)
class Observation:
    """One instance's verdict: `active` (the condition holds), False (it does not), None (no
    verdict: keep the state, e.g. a check between its failure and success thresholds)."""

    active: bool | None
    value: float | None = None
    summary: str = ""
    url: str = ""


@dataclass(frozen=True)
class Outcome:
    """A rule's evaluation: its instances ("" for a rule with one) or the error that stopped it.
    Instances with state but absent here are no longer active (a group back under the
    frequency threshold, a deleted check)."""

    instances: dict[str, Observation]
    value: float | None = None  # the rule's headline value (the Alerts page's "last value")
    error: str = ""


def _fmt(v: float | None) -> str:
    if v is None:
        return "no value"
    return f"{v:g}" if v != int(v) else f"{int(v)}"


def _window(s: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"


def _search_url(base: str, query: str) -> str:
    return f"{base}/search?q={quote(query)}"


def evaluate_project(
    store: Store, project: Project, rules: Sequence[Rule], checks: Sequence[Check], now: int, base_url: str = ""
) -> dict[str, Outcome]:
    """Every rule of `project` (rules of other projects are ignored), by name. A failing read
    (store trouble) is that batch's rules' `error`, never an exception."""
    out: dict[str, Outcome] = {}
    mine = [r for r in rules if r.project == project.name]
    _aggregates(store, project, [r for r in mine if r.kind in ("threshold", "absence")], now, base_url, out)
    _error_frequency(
        store, project, [r for r in mine if r.kind == "error" and r.when == "frequency"], now, base_url, out
    )
    _error_groups(store, project, [r for r in mine if r.kind == "error" and r.when != "frequency"], now, base_url, out)
    _checks(store, project, [r for r in mine if r.kind == "check"], checks, now, base_url, out)
    _metrics(store, project, [r for r in mine if r.kind == "metric"], now, base_url, out)
    return out


def _fail(rules: Sequence[Rule], e: Exception, out: dict[str, Outcome]) -> None:
    for r in rules:
        out[r.name] = Outcome({}, error=str(e) or type(e).__name__)


def _aggregates(
    store: Store, project: Project, rules: Sequence[Rule], now: int, base: str, out: dict[str, Outcome]
) -> None:
    by_window: dict[float, list[Rule]] = defaultdict(list)
    for r in rules:
        by_window[r.window_s].append(r)
    for window_s, batch in by_window.items():
        specs: dict[Aggregate, int] = {}  # identical measures are read once
        for r in batch:
            specs.setdefault(r.aggregate(), len(specs))
        try:
            values = store.aggregates(project.id, now - int(window_s * US), now + 1, list(specs))
        except (ObshubError, ValueError) as e:
            _fail(batch, e, out)
            continue
        for r in batch:
            v = values[specs[r.aggregate()]]
            url = _search_url(base, r.query)
            if r.kind == "absence":
                summary = f"no events matching {r.query} in the last {_window(window_s)}"
                out[r.name] = Outcome({"": Observation(v == 0, v, summary, url)}, v)
                continue
            active = v is not None and (v > r.threshold if r.op == ">" else v < r.threshold)
            what = r.measure if not r.attr else f"{r.measure}(attrs.{r.attr})"
            summary = (
                f"{what} of {r.query or 'all events'} over {_window(window_s)} = {_fmt(v)} {r.op} {_fmt(r.threshold)}"
            )
            out[r.name] = Outcome({"": Observation(active, v, summary if active else "", url)}, v)


def _error_frequency(
    store: Store, project: Project, rules: Sequence[Rule], now: int, base: str, out: dict[str, Outcome]
) -> None:
    by_read: dict[tuple[float, str], list[Rule]] = defaultdict(list)
    for r in rules:
        by_read[(r.window_s, r.query)].append(r)
    for (window_s, _), batch in by_read.items():
        try:
            stats = store.group_stats(project.id, batch[0].node, now - int(window_s * US), now + 1)
        except (ObshubError, ValueError) as e:
            _fail(batch, e, out)
            continue
        for r in batch:
            found: dict[str, Observation] = {}
            top = 0.0
            for gid, st in stats.items():
                if r.group and gid != r.group:
                    continue
                v = float(st.users if r.measure == "users" else st.count)
                top = max(top, v)
                if v > r.threshold:
                    unit = "users" if r.measure == "users" else "events"
                    found[gid] = Observation(
                        True,
                        v,
                        f"{_fmt(v)} {unit} in {_window(window_s)} > {_fmt(r.threshold)}",
                        f"{base}/errors/{gid}",
                    )
            out[r.name] = Outcome(found, top)


def _error_groups(
    store: Store, project: Project, rules: Sequence[Rule], now: int, base: str, out: dict[str, Outcome]
) -> None:
    """new: a group first seen within the rule's window (and never reopened: that is a
    regression); regression: one reopened within it. Either stays active for the window (or
    until resolved or ignored), then resolves."""
    if not rules:
        return
    try:
        groups = store.get_groups(project.id)
    except ObshubError as e:
        _fail(rules, e, out)
        return
    for r in rules:
        since = now - int(r.window_s * US)
        found: dict[str, Observation] = {}
        for g in groups:
            if g.state != "unresolved" or g.merged_into:
                continue
            at = g.first_seen if r.when == "new" else g.regressed_at
            if at is None or at < since or (r.when == "new" and g.regressed_at is not None):  # reopened: a regression
                continue
            what = "new error" if r.when == "new" else "regression"
            found[g.id] = Observation(True, None, f"{what}: {g.title}"[:300], f"{base}/errors/{g.id}")
        out[r.name] = Outcome(found, float(len(found)))


def _checks(
    store: Store,
    project: Project,
    rules: Sequence[Rule],
    config: Sequence[Check],
    now: int,
    base: str,
    out: dict[str, Outcome],
) -> None:
    """Each check's newest results are read once (as many as the most demanding rule needs)."""
    if not rules:
        return
    try:
        names = sorted({r.check for r in rules if r.check})
        if any(not r.check for r in rules):
            names = sorted({*names, *(c.name for c in project_checks(store, project, config))})
        depth = max(max(r.failures, r.successes) for r in rules)
        results = {n: store.search(project.id, SearchRequest(results_query(n), None, now + 1, depth)) for n in names}
    except ObshubError as e:
        _fail(rules, e, out)
        return
    for r in rules:
        found: dict[str, Observation] = {}
        for name in [r.check] if r.check else names:
            evs = results.get(name) or []
            url = _search_url(base, to_string(results_query(name)))
            if r.when == "tls_expiry":
                expires = next((e["attrs"].get("tls_expires_at") for e in evs if "tls_expires_at" in e["attrs"]), None)
                if not isinstance(expires, int) or isinstance(expires, bool):
                    if evs:  # no certificate in the newest results (a failed handshake): keep the state
                        found[name] = Observation(None, None, "", url)
                    continue
                days = (expires - now) / DAY_US
                summary = f"TLS certificate of {name} expires in {days:.1f} days (< {_fmt(r.days)})"
                found[name] = Observation(days < r.days, round(days, 3), summary, url)
                continue
            ups = [bool(e["attrs"].get("up")) for e in evs]
            if len(ups) >= r.failures and not any(ups[: r.failures]):
                msg = str(evs[0].get("message") or "")[:200]
                summary = f"check {name} down: {r.failures} failed probes in a row" + (f" ({msg})" if msg else "")
                found[name] = Observation(True, 0.0, summary, url)
            elif len(ups) >= r.successes and all(ups[: r.successes]):
                found[name] = Observation(False, 1.0, "", url)
            else:
                found[name] = Observation(None, None, "", url)
        out[r.name] = Outcome(found, float(sum(1 for o in found.values() if o.active)))


def _metrics(
    store: Store, project: Project, rules: Sequence[Rule], now: int, base: str, out: dict[str, Outcome]
) -> None:
    """A defined metric's stored row of the current (or previous) hour or day, as the rollup job
    last computed it (at most rollup_interval_s old): one read per metric and bucket. No stored
    total row (an unknown metric, or not rolled up yet) is the rule's error; a group without a
    row in that bucket (not in its top) has no value, so the condition does not hold."""
    reads: dict[tuple[str, str, int], list[RollupRow]] = {}
    for r in rules:
        interval = "hour" if r.window_s == 3600 else "day"
        step = ROLLUP_INTERVALS[interval]
        t = now - now % step - (step if r.bucket == "previous" else 0)
        try:
            if (r.metric, interval, t) not in reads:
                reads[(r.metric, interval, t)] = store.rollup_series(project.id, r.metric, interval, t, t + step)
        except ObshubError as e:
            _fail([r], e, out)
            continue
        rows = {row.group: row for row in reads[(r.metric, interval, t)]}
        if "" not in rows:
            what = f"{'this' if r.bucket == 'current' else 'the previous'} {interval}"
            _fail(
                [r],
                ValueError(f"metric {r.metric!r} has no value stored for {what} (not defined, or not rolled up yet)"),
                out,
            )
            continue
        row = rows.get(r.group)
        v = float(row.value) if row is not None and row.value is not None else None
        active = v is not None and (v > r.threshold if r.op == ">" else v < r.threshold)
        name = r.metric + (f"{{group={r.group}}}" if r.group else "")
        summary = f"metric {name} over {r.bucket} {interval} = {_fmt(v)} {r.op} {_fmt(r.threshold)}"
        url = f"{base}/api/v1/metrics/{quote(r.metric)}/series?interval={interval}"
        out[r.name] = Outcome({"": Observation(active, v, summary if active else "", url)}, v)

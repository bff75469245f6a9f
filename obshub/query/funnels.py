"""Funnels, retention cohorts and A/B comparisons over `kind=event` records (docs/analytics.md).

One computation for both stores: `Store.event_rows` streams the steps' events ordered by user
then time (SQLite sorts a UNION ALL; OpenSearch merges one sorted scan per step), and each
user's events are judged alone (memory: one user's events of the steps, not the range's). The rules, also in the docs:

- A user enters a funnel with an event of step 1 in the range. From an entry the sequence takes,
  for each next step, its earliest event after the previous step's event (by ts, then id: one
  event never fills two steps) and at most `window` after the entry. A user who enters several
  times counts once, with the first entry (oldest) whose sequence reaches the deepest step.
- order `sequential`: each step after the previous one (other events in between are allowed);
  `any`: steps 2..n in any order after the entry, each within the window; step k is reached
  when steps 2..k all were, at the latest of their times.
- Rows without a user_id are excluded; `events_without_user` counts step 1's.
- unit `session`: the same rules per session_id instead of per user (a user's two sessions
  are two entries); rows without a session_id are excluded, `events_without_session` counts
  step 1's.
"""

from __future__ import annotations

import itertools
import statistics
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from obshub.errors import QueryError
from obshub.events import format_ts
from obshub.query import stats
from obshub.query.search import parse_query
from obshub.query.times import parse_interval, parse_time
from obshub.store.base import EventUnit, Store
from obshub.store.querylang import And, Field, Node

__all__ = [
    "MAX_STEPS",
    "Funnel",
    "Step",
    "UserResult",
    "experiment",
    "funnel",
    "judge_user",
    "parse_funnel",
    "retention",
    "run_funnel",
]

MAX_STEPS = 10
MAX_GROUPS = 50  # breakdown values shown (by users entered), the rest in "other"
MAX_PERIODS = 120  # retention periods: 120 days or weeks
_DAY = 86_400_000_000
ORDERS = ("sequential", "any")
UNITS: dict[str, EventUnit] = {"user": "user_id", "session": "session_id"}  # `unit` -> the field followed

Row = tuple[int, str, int, Any]  # (ts, id, step index, breakdown value)


@dataclass(frozen=True)
class Step:
    event: str | None  # None: any event (retention's "first seen" and "any return")
    q: str = ""

    def query(self) -> Node | None:
        parts: list[Node] = []
        if self.event is not None:
            parts.append(Field("name", "=", self.event, quoted=True))
        node = parse_query(self.q)
        if node is not None:
            parts.append(node)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else And(tuple(parts))


@dataclass(frozen=True)
class Funnel:
    steps: tuple[Step, ...]
    window: int  # µs
    start: int
    end: int
    order: str = "sequential"
    breakdown: str | None = None  # an attribute key of step 1's event
    unit: str = "user"  # a key of UNITS: whose sequences are judged

    @property
    def noun(self) -> str:
        """The counted things in the JSON: "users" or "sessions"."""
        return self.unit + "s"


@dataclass(frozen=True)
class UserResult:
    depth: int  # steps reached, 1..n
    times: tuple[int, ...]  # ts at which each reached step was reached
    value: Any  # the entry event's breakdown value


def _key(v: Any) -> str:
    """A breakdown value as a dict key: JSON types kept apart (true vs "true")."""
    return repr(v)


def judge_user(rows: Sequence[Row], n: int, window: int, order: str) -> UserResult | None:
    """The user's first qualifying sequence (module docstring), None without an entry."""
    by_step: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    for ts, eid, i, _ in rows:
        by_step[i].append((ts, eid))
    for lst in by_step:
        lst.sort()
    entries = sorted((ts, eid, v) for ts, eid, i, v in rows if i == 0)
    best: UserResult | None = None
    for ts0, id0, v0 in entries:
        limit = ts0 + window
        times = [ts0]
        pos = (ts0, id0)
        for k in range(1, n):
            lst = by_step[k]
            j = bisect_right(lst, pos if order == "sequential" else (ts0, id0))
            if j == len(lst) or lst[j][0] > limit:
                break
            if order == "sequential":
                pos = lst[j]
                times.append(lst[j][0])
            else:
                times.append(max(times[-1], lst[j][0]))
        if best is None or len(times) > best.depth:
            best = UserResult(len(times), tuple(times), v0)
            if best.depth == n:
                break
    return best


def _users(
    store: Store,
    pid: int,
    steps: Sequence[Step],
    start: int,
    end: int,
    prop: str | None,
    unit: str = "user",
    ids: bool = True,
) -> Iterator[list[Row]]:
    """Each user's (or session's) rows of every step (the store sorts them by unit, then time)."""
    rows = store.event_rows(pid, [s.query() for s in steps], start, end, prop, UNITS[unit], ids)
    for _, grp in itertools.groupby(rows, key=itemgetter(0)):
        yield [r[1:] for r in grp]


class _Acc:
    """Users reaching each step and their step-to-step durations (µs)."""

    def __init__(self, n: int, value: Any = None) -> None:
        self.value = value
        self.entered = [0] * n
        self.durations: list[list[int]] = [[] for _ in range(n)]

    def add(self, r: UserResult) -> None:
        for k in range(r.depth):
            self.entered[k] += 1
            if k:
                self.durations[k].append(r.times[k] - r.times[k - 1])

    def merge(self, other: _Acc) -> None:
        for k in range(len(self.entered)):
            self.entered[k] += other.entered[k]
            self.durations[k].extend(other.durations[k])

    def steps(self, steps: Sequence[Step], noun: str = "users") -> list[dict[str, Any]]:
        first = self.entered[0]
        out = []
        for k, st in enumerate(steps):
            prev = self.entered[k - 1] if k else first
            d = self.durations[k]
            out.append(
                {
                    "event": st.event,
                    "q": st.q,
                    noun: self.entered[k],
                    "from_previous": round(self.entered[k] / prev, 6) if prev else None,
                    "from_first": round(self.entered[k] / first, 6) if first else None,
                    "median_seconds": statistics.median(d) / 1e6 if d else None,
                }
            )
        return out


def run_funnel(store: Store, pid: int, f: Funnel) -> tuple[_Acc, dict[str, _Acc], int]:
    """(all users or sessions, per breakdown value, step-1 events without the unit's id)."""
    total = _Acc(len(f.steps))
    groups: dict[str, _Acc] = {}
    seen = 0
    for rows in _users(store, pid, f.steps, f.start, f.end, f.breakdown, f.unit):
        seen += sum(1 for r in rows if r[2] == 0)
        res = judge_user(rows, len(f.steps), f.window, f.order)
        if res is None:
            continue
        total.add(res)
        if f.breakdown is not None:
            groups.setdefault(_key(res.value), _Acc(len(f.steps), res.value)).add(res)
    q0 = f.steps[0].query()
    kind = Field("kind", "=", "event")
    all_first = store.count(pid, kind if q0 is None else And((kind, q0)), f.start, f.end)
    return total, groups, all_first - seen


def funnel(store: Store, pid: int, f: Funnel) -> dict[str, Any]:
    total, groups, anonymous = run_funnel(store, pid, f)
    out: dict[str, Any] = {
        "unit": f.unit,
        "steps": total.steps(f.steps, f.noun),
        "window_seconds": f.window // 1_000_000,
        "order": f.order,
        f"events_without_{f.unit}": anonymous,
    }
    if f.breakdown is not None:
        ranked = sorted(groups.values(), key=lambda a: (-a.entered[0], _key(a.value)))
        out["breakdown"] = [{"value": a.value, "steps": a.steps(f.steps, f.noun)} for a in ranked[:MAX_GROUPS]]
        if len(ranked) > MAX_GROUPS:
            other = _Acc(len(f.steps))
            for a in ranked[MAX_GROUPS:]:
                other.merge(a)
            out["other"] = {"steps": other.steps(f.steps, f.noun)}
    return out


# -- parsing the JSON body (POST) or the query string (GET) ---------------------------------------
_FUNNEL_KEYS = {"steps", "window", "order", "unit", "from", "to"}


def _known(body: dict[str, Any], keys: set[str], where: str = "") -> None:
    unknown = sorted(set(body) - keys)
    if unknown:
        raise QueryError(f"{where}{unknown[0][:40]}: unknown parameter")


def _str(body: dict[str, Any], name: str, default: str | None = None) -> str | None:
    v = body.get(name, default)
    if v is not None and not isinstance(v, str):
        raise QueryError(f"{name}: expected a string")
    return v


def _time(body: dict[str, Any], name: str, default: str) -> str:
    v = body.get(name)
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)  # an epoch number, as in the query string
    return _str(body, name) or default


def _range(body: dict[str, Any], now: int) -> tuple[int, int]:
    start = parse_time(_time(body, "from", "-7d"), "from", now)
    end = parse_time(_time(body, "to", "now"), "to", now)
    assert start is not None and end is not None
    if end <= start:
        raise QueryError("to: must be after from")
    return start, end


def _duration(body: dict[str, Any], name: str, default: str) -> int:
    raw = _str(body, name) or default
    try:
        return parse_interval(raw)
    except QueryError as e:
        raise QueryError(f"{name}: {str(e).split(': ', 1)[1]}") from None


def _prop(body: dict[str, Any], name: str) -> str | None:
    v = _str(body, name)
    if v is None or v == "":
        return None
    key = v[len("attrs.") :] if v.startswith("attrs.") else v
    if not key or any(c in key for c in "\"'\\\x00"):
        raise QueryError(f"{name}: an attribute name without quotes, backslashes or NUL")
    return key


def _step(raw: Any, name: str, event_required: bool = True) -> Step:
    if isinstance(raw, str):
        raw = {"event": raw}
    if not isinstance(raw, dict):
        raise QueryError(f"{name}: expected an object with event and q")
    _known(raw, {"event", "q"}, f"{name}.")
    ev = raw.get("event")
    if ev is not None and (not isinstance(ev, str) or not ev):
        raise QueryError(f"{name}.event: expected a non-empty string")
    if ev is None and event_required:
        raise QueryError(f"{name}.event: required")
    q = raw.get("q")
    q = "" if q is None else q
    if not isinstance(q, str):
        raise QueryError(f"{name}.q: expected a string")
    step = Step(ev, q)
    try:
        step.query()
    except QueryError as e:
        raise QueryError(f"{name}.q: {e}") from None
    return step


def parse_funnel(body: dict[str, Any], now: int, min_steps: int = 2) -> Funnel:
    _known(body, _FUNNEL_KEYS | {"breakdown"})
    raw = body.get("steps")
    if not isinstance(raw, list) or not min_steps <= len(raw) <= MAX_STEPS:
        raise QueryError(f"steps: expected a list of {min_steps} to {MAX_STEPS} steps")
    steps = tuple(_step(s, f"steps[{i}]") for i, s in enumerate(raw))
    order = _str(body, "order") or "sequential"
    if order not in ORDERS:
        raise QueryError(f"order: expected one of {', '.join(ORDERS)}")
    unit = _str(body, "unit") or "user"
    if unit not in UNITS:
        raise QueryError(f"unit: expected one of {', '.join(UNITS)}")
    start, end = _range(body, now)
    return Funnel(steps, _duration(body, "window", "1d"), start, end, order, _prop(body, "breakdown"), unit)


# -- A/B comparison ----------------------------------------------------------------------------------
def experiment(store: Store, pid: int, body: dict[str, Any], now: int) -> dict[str, Any]:
    """Conversion (the last step from the first) per value of the `variant` attribute of step 1's
    event, each variant against `control` (default: the first value in sort order); per user or,
    with unit `session`, per session (the funnel's `unit`)."""
    variant = _prop(body, "variant")
    if variant is None:
        raise QueryError("variant: required (the attribute that holds the variant)")
    _known(body, _FUNNEL_KEYS | {"variant", "control"})
    funnel_body = {k: v for k, v in body.items() if k in _FUNNEL_KEYS}
    f = parse_funnel({**funnel_body, "breakdown": variant}, now)
    total, groups, anonymous = run_funnel(store, pid, f)
    arms = {k: a for k, a in groups.items() if a.value is not None}
    if len(arms) > MAX_GROUPS:
        raise QueryError(f"variant: {len(arms)} values, more than {MAX_GROUPS}")
    control = body.get("control")
    if control is not None and _key(control) not in arms:
        raise QueryError(f"control: no {f.unit} has {variant} = {control!r}")
    ckey = _key(control) if control is not None else min(arms, key=lambda k: str(arms[k].value), default=None)
    n = len(f.steps) - 1
    variants = [
        {"value": a.value, f.noun: a.entered[0], "converted": a.entered[n]}
        for a in sorted(arms.values(), key=lambda a: str(a.value))
    ]
    comparisons = []
    if ckey is not None:
        c = arms[ckey]
        for k, a in sorted(arms.items(), key=lambda ka: str(ka[1].value)):
            if k == ckey:
                continue
            cmp = stats.two_proportions(c.entered[n], c.entered[0], a.entered[n], a.entered[0])
            comparisons.append(
                {
                    "control": c.value,
                    "variant": a.value,
                    "control_rate": round(cmp.rate_a, 6),
                    "variant_rate": round(cmp.rate_b, 6),
                    "difference": round(cmp.difference, 6),
                    "z": round(cmp.z, 4),
                    "p_value": cmp.p_value,
                    "ci95": [round(cmp.ci_low, 6), round(cmp.ci_high, 6)],
                    "enough_data": cmp.enough_data,
                    "reading": _reading(c.value, a.value, cmp),
                }
            )
    no_variant = sum(a.entered[0] for a in groups.values() if a.value is None)
    return {
        "unit": f.unit,
        "variant": variant,
        "variants": variants,
        "comparisons": comparisons,
        f"{f.noun}_without_variant": no_variant,
        f"events_without_{f.unit}": anonymous,
        "steps": total.steps(f.steps, f.noun),
    }


def _reading(control: Any, variant: Any, c: stats.Comparison) -> str:
    if not c.enough_data:
        return (
            f"not enough data: each variant needs at least {stats.MIN_USERS} users and "
            f"{stats.MIN_EVENTS} conversions and non-conversions"
        )
    pts = abs(c.difference) * 100
    if c.p_value >= 0.05:
        return (
            f"no significant difference: {variant} converts {c.rate_b:.1%} vs {c.rate_a:.1%} for {control} "
            f"(p = {c.p_value:.3f}; the true difference is likely between {c.ci_low * 100:+.1f} and "
            f"{c.ci_high * 100:+.1f} points)"
        )
    way = "higher" if c.difference > 0 else "lower"
    return (
        f"{variant} converts {pts:.1f} points {way} than {control} ({c.rate_b:.1%} vs {c.rate_a:.1%}, "
        f"p = {c.p_value:.2g}): significant at 95%, difference between {c.ci_low * 100:+.1f} and "
        f"{c.ci_high * 100:+.1f} points"
    )


def _or_any(body: dict[str, Any], name: str) -> Any:
    v = body.get(name)
    return {} if v is None else v


# -- retention -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Retention:
    """A retention request, checked (`parse_retention`): what `retention` runs and what the
    Retention tab and dashboard panels check before saving one."""

    start_step: Step
    return_step: Step
    period: str  # day | week
    periods: int
    bounded: bool


def parse_retention(body: dict[str, Any]) -> Retention:
    """The body's retention fields (not `from`/`to`) -> Retention; QueryError naming the field."""
    _known(body, {"start", "return", "period", "periods", "bounded", "from", "to"})
    start_step = _step(_or_any(body, "start"), "start", event_required=False)
    ret_step = _step(_or_any(body, "return"), "return", event_required=False)
    period = _str(body, "period") or "day"
    if period not in ("day", "week"):
        raise QueryError("period: expected day or week")
    periods = body.get("periods", 8 if period == "week" else 14)
    if not isinstance(periods, int) or isinstance(periods, bool) or not 1 <= periods <= MAX_PERIODS:
        raise QueryError(f"periods: expected an integer from 1 to {MAX_PERIODS}")
    bounded = body.get("bounded", True)
    if not isinstance(bounded, bool):
        raise QueryError("bounded: expected true or false")
    return Retention(start_step, ret_step, period, periods, bounded)


def retention(store: Store, pid: int, body: dict[str, Any], now: int) -> dict[str, Any]:
    """Cohorts by the day or week (UTC) of each user's first start event in the range; period N
    of a user is [t0 + N*P, t0 + (N+1)*P) from that event's time t0. bounded: a return event
    in period N itself; unbounded: in period N or any later one (seen in the range). A cell is
    null until every user of its cohort had period N fully inside the range."""
    r = parse_retention(body)
    start_step, ret_step, period, periods, bounded = r.start_step, r.return_step, r.period, r.periods, r.bounded
    p = _DAY if period == "day" else 7 * _DAY
    start, end = _range(body, now)
    cohorts: dict[int, list[Any]] = {}  # cohort start -> [size, last t0, returned per period]
    # Times only (ids=False): a return at the start event's own ts is in period 0, never counted,
    # so the id that orders events of one microsecond changes no cell.
    for rows in _users(store, pid, (start_step, ret_step), start, end, None, ids=False):
        firsts = [r for r in rows if r[2] == 0]
        if not firsts:
            continue
        t0, id0 = min((r[0], r[1]) for r in firsts)
        c = cohorts.setdefault(t0 - t0 % p, [0, t0, [0] * periods])
        c[0] += 1
        c[1] = max(c[1], t0)
        hit = [False] * (periods + 1)
        for ts, eid, i, _ in rows:
            if i == 1 and (ts, eid) > (t0, id0):
                n = (ts - t0) // p
                if 1 <= n <= periods:
                    hit[n] = True
                elif n > periods and not bounded:
                    hit[periods] = True
        if not bounded:
            for n in range(periods - 1, 0, -1):
                hit[n] = hit[n] or hit[n + 1]
        for n in range(1, periods + 1):
            if hit[n]:
                c[2][n - 1] += 1
    table = []
    curve_num = [0] * periods
    curve_den = [0] * periods
    for cs in sorted(cohorts):
        size, last, counts = cohorts[cs]
        cells: list[int | None] = []
        for n in range(1, periods + 1):
            if last + (n + 1) * p > end:
                cells.append(None)
            else:
                cells.append(counts[n - 1])
                curve_num[n - 1] += counts[n - 1]
                curve_den[n - 1] += size
        table.append({"cohort": format_ts(cs), "users": size, "returned": cells})
    curve = [
        {
            "period": n + 1,
            "users": curve_den[n],
            "rate": round(curve_num[n] / curve_den[n], 6) if curve_den[n] else None,
        }
        for n in range(periods)
    ]
    return {"period": period, "bounded": bounded, "cohorts": table, "curve": curve}

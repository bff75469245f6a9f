"""Synthetic product data with known ground truth, and brute-force oracles of the analyses of
obshub/query/funnels.py (written apart from it: every chain of events is tried).

Each user visits (1-3 times, a `variant` A or B and a `plan` on the visit), signs up with a
planted probability per variant, purchases after signing up with probability 0.5; delays
straddle the 1-day window; some events share a timestamp, some have no user_id, and the list is
shuffled (events arrive out of order). Visits return on later days with a planted curve.
Sessions: a user's events in one 6-hour block of time share a session_id (a signup hours after
the visit is often another session); every 11th event has none, anonymous events one each."""

from __future__ import annotations

import itertools
import random
from typing import Any

DAY = 86_400_000_000
HOUR = 3_600_000_000
Ev = dict[str, Any]


def generate(
    seed: int, users: int, t0: int, signup: tuple[float, float] = (0.3, 0.3), returning: float = 0.35
) -> list[Ev]:
    rng = random.Random(seed)
    out: list[Ev] = []
    n = 0

    def add(name: str, ts: int, user: str | None, **attrs: Any) -> None:
        nonlocal n
        n += 1
        ev: Ev = {"id": f"p{seed}-{n:07d}", "ts": ts, "kind": "event", "name": name, "message": name, "attrs": attrs}
        if user is not None:
            ev["user_id"] = user
        if n % 11:  # no rng draw: the users' data stays what it was before sessions
            ev["session_id"] = f"s{seed}-{user}-{(ts - t0) // (6 * HOUR)}" if user else f"s{seed}-anon-{n}"
        out.append(ev)

    for u in range(users):
        uid = f"user-{seed}-{u}"
        variant = "A" if u % 2 == 0 else "B"
        plan = rng.choice(("free", "free", "pro", True))
        start = t0 + rng.randrange(6 * DAY)
        for k in range(rng.choice((1, 1, 1, 2, 3))):
            ts = start + k * rng.randrange(2 * DAY)
            add("visit", ts, uid, variant=variant, plan=plan)
        if rng.random() < signup[0 if variant == "A" else 1]:
            ts = start + rng.choice((0, rng.randrange(DAY), DAY, DAY + 1, rng.randrange(3 * DAY)))
            add("signup", ts, uid)
            if rng.random() < 0.5:
                add("purchase", ts + rng.choice((0, rng.randrange(DAY))), uid, amount=rng.randint(1, 9))
        for day in range(1, 10):  # a planted, decaying return curve
            if rng.random() < returning / day**0.5:
                add("visit", start + day * DAY + rng.randrange(DAY), uid, variant=variant, plan=plan)
        if rng.random() < 0.2:
            add("noise", start + rng.randrange(DAY), uid)
    for _ in range(users // 10):  # anonymous: no user_id
        add("visit", t0 + rng.randrange(6 * DAY), None, variant="A")
    rng.shuffle(out)
    return out


def _key(ev: Ev) -> tuple[int, str]:
    return (ev["ts"], ev["id"])


def funnel_oracle(
    events: list[Ev],
    steps: list[str],
    window: int,
    start: int,
    end: int,
    order: str = "sequential",
    prop: str = "",
    unit: str = "user_id",
) -> dict[str, Any]:
    """users (or sessions: unit session_id) per step, durations per step (µs), per breakdown
    value: every valid chain tried."""
    by_user: dict[str, list[Ev]] = {}
    anonymous = 0
    for e in events:
        if e["kind"] == "event" and start <= e["ts"] < end and e["name"] in steps:
            if unit not in e:
                anonymous += e["name"] == steps[0]
            else:
                by_user.setdefault(e[unit], []).append(e)
    n = len(steps)
    users = [0] * n
    durations: list[list[int]] = [[] for _ in range(n)]
    groups: dict[str, list[int]] = {}
    for evs in by_user.values():
        lists = [sorted((e for e in evs if e["name"] == s), key=_key) for s in steps]
        if not lists[0]:
            continue
        best: tuple[Ev, ...] | None = None
        for d in range(n, 0, -1):
            valid = [c for c in itertools.product(*lists[:d]) if _valid(c, window, order)]
            if valid:
                best = min(valid, key=lambda c: [_key(e) for e in c])
                break
        assert best is not None
        times = [best[0]["ts"]]
        for e in best[1:]:
            times.append(e["ts"] if order == "sequential" else max(times[-1], e["ts"]))
        for k in range(len(best)):
            users[k] += 1
            if k:
                durations[k].append(times[k] - times[k - 1])
        if prop:
            g = groups.setdefault(repr(best[0]["attrs"].get(prop)), [0] * n)
            for k in range(len(best)):
                g[k] += 1
    return {"users": users, "durations": durations, "groups": groups, "anonymous": anonymous}


def _valid(chain: tuple[Ev, ...], window: int, order: str) -> bool:
    e0 = chain[0]
    if any(e["ts"] > e0["ts"] + window for e in chain):
        return False
    if order == "sequential":
        return all(_key(a) < _key(b) for a, b in itertools.pairwise(chain))
    return all(_key(e0) < _key(e) for e in chain[1:])


def retention_oracle(
    events: list[Ev], start_event: str | None, period: int, periods: int, start: int, end: int, bounded: bool
) -> list[tuple[int, int, list[int | None]]]:
    """(cohort start, users, returned per period 1..periods or None) by cohort; returns: any event."""
    by_user: dict[str, list[Ev]] = {}
    for e in events:
        if e["kind"] == "event" and start <= e["ts"] < end and "user_id" in e:
            by_user.setdefault(e["user_id"], []).append(e)
    cohorts: dict[int, list[tuple[tuple[int, str], list[Ev]]]] = {}
    for evs in by_user.values():
        firsts = [e for e in evs if start_event is None or e["name"] == start_event]
        if not firsts:
            continue
        k0 = min(_key(e) for e in firsts)
        cohorts.setdefault(k0[0] - k0[0] % period, []).append((k0, evs))
    out = []
    for cs in sorted(cohorts):
        members = cohorts[cs]
        last = max(k0[0] for k0, _ in members)
        cells: list[int | None] = []
        for n in range(1, periods + 1):
            if last + (n + 1) * period > end:
                cells.append(None)
                continue
            count = 0
            for k0, evs in members:
                lo = k0[0] + n * period
                hi = lo + period if bounded else end + 1
                if any(_key(e) > k0 and lo <= e["ts"] < hi for e in evs):
                    count += 1
            cells.append(count)
        out.append((cs, len(members), cells))
    return out


def paths_oracle(
    events: list[Ev], anchor: str, depth: int, window: int, start: int, end: int, unit: str = "user_id"
) -> dict[str, Any]:
    """From each unit's first `anchor` event: the names of its next `depth` events within `window`
    (every name is told apart: fewer than 20 here), counted per unit."""
    by_unit: dict[str, list[Ev]] = {}
    anonymous = 0
    for e in events:
        if e["kind"] == "event" and start <= e["ts"] < end:
            if unit in e:
                by_unit.setdefault(e[unit], []).append(e)
            else:
                anonymous += e["name"] == anchor
    walks: dict[tuple[str, ...], int] = {}
    entered = 0
    for evs in by_unit.values():
        evs.sort(key=_key)
        first = next((e for e in evs if e["name"] == anchor), None)
        if first is None:
            continue
        entered += 1
        after = [e["name"] for e in evs if _key(e) > _key(first) and e["ts"] <= first["ts"] + window][:depth]
        if after:
            walks[tuple(after)] = walks.get(tuple(after), 0) + 1
    firsts: dict[str, int] = {}
    for w, n in walks.items():
        firsts[w[0]] = firsts.get(w[0], 0) + n
    return {"entered": entered, "walks": walks, "firsts": firsts, "anonymous": anonymous}

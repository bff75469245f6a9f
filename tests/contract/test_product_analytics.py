"""Funnels, retention and A/B comparisons (POST /api/v1/analytics/funnel, /retention, /experiment)
give exactly the brute-force oracle's numbers on both stores (tests/product_data.py), and the
z-test finds a planted lift and no effect in an A/A split."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from obshub.events import format_ts, normalize
from obshub.query import funnels, stats
from obshub.store.base import Store
from obshub.store.querylang import parse
from tests.factories import event, now_us
from tests.hubproc import LiveHub
from tests.product_data import DAY, HOUR, funnel_oracle, generate, paths_oracle, retention_oracle

T0 = (now_us() // DAY - 20) * DAY  # a UTC midnight, 20 days ago


def _load(hub: LiveHub, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 1000):
        r = hub.ingest(events[i : i + 1000])
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(events[i : i + 1000])


def _post(hub: LiveHub, path: str, body: dict[str, Any]) -> Any:
    with hub.client(hub.read_token) as c:
        r = c.post(f"/api/v1/analytics/{path}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


RANGE = {"from": format_ts(T0), "to": format_ts(T0 + 12 * DAY)}


def _check_funnel(out: dict[str, Any], want: dict[str, Any], unit: str = "user") -> None:
    assert out["unit"] == unit
    assert [s[unit + "s"] for s in out["steps"]] == want["users"]
    for s, d in zip(out["steps"], want["durations"], strict=True):
        assert s["median_seconds"] == (statistics.median(d) / 1e6 if d else None)
    assert out[f"events_without_{unit}"] == want["anonymous"]


@pytest.fixture
def loaded(hub: LiveHub) -> tuple[LiveHub, list[dict[str, Any]]]:
    events = generate(3, 400, T0)
    _load(hub, events)
    return hub, events


def test_funnel_equals_oracle(loaded: tuple[LiveHub, list[dict[str, Any]]]) -> None:
    hub, events = loaded
    steps = ["visit", "signup", "purchase"]
    for order in ("sequential", "any"):
        for window, w_us in (("1d", DAY), ("1h", HOUR), ("14d", 14 * DAY)):
            body = {"steps": steps, "window": window, "order": order, "breakdown": "plan", **RANGE}
            out = _post(hub, "funnel", body)
            want = funnel_oracle(events, steps, w_us, T0, T0 + 12 * DAY, order, "plan")
            _check_funnel(out, want)
            got = {repr(g["value"]): [s["users"] for s in g["steps"]] for g in out["breakdown"]}
            assert got == want["groups"]
            assert "True" in got  # a boolean value stays a boolean on both stores
    # A repeated step: one event never fills two steps.
    out = _post(hub, "funnel", {"steps": ["visit", "visit", "signup"], "window": "14d", **RANGE})
    _check_funnel(out, funnel_oracle(events, ["visit", "visit", "signup"], 14 * DAY, T0, T0 + 12 * DAY))
    # A step with a query filter.
    out = _post(hub, "funnel", {"steps": [{"event": "visit", "q": "variant:B"}, "signup"], "window": "1d", **RANGE})
    visits_b = [e for e in events if e["name"] != "visit" or e["attrs"].get("variant") == "B"]
    _check_funnel(out, funnel_oracle(visits_b, ["visit", "signup"], DAY, T0, T0 + 12 * DAY))


def test_session_funnel_equals_oracle(loaded: tuple[LiveHub, list[dict[str, Any]]]) -> None:
    """unit=session: each session_id judged alone (a user's two sessions are two entries), events
    without one excluded and counted; anonymous users' sessions count."""
    hub, events = loaded
    steps = ["visit", "signup", "purchase"]
    for order in ("sequential", "any"):
        for window, w_us in (("1d", DAY), ("1h", HOUR)):
            body = {"steps": steps, "window": window, "order": order, "breakdown": "plan", "unit": "session", **RANGE}
            out = _post(hub, "funnel", body)
            want = funnel_oracle(events, steps, w_us, T0, T0 + 12 * DAY, order, "plan", unit="session_id")
            _check_funnel(out, want, "session")
            got = {repr(g["value"]): [s["sessions"] for s in g["steps"]] for g in out["breakdown"]}
            assert got == want["groups"]
            by_user = funnel_oracle(events, steps, w_us, T0, T0 + 12 * DAY, order)
            # Not the per-user numbers: more entries (sessions), fewer conversions (signups in later sessions).
            assert want["users"][0] > by_user["users"][0] and want["users"][1] < by_user["users"][1]
            assert want["anonymous"] > 0 and "users" not in out["steps"][0]
    out = _post(hub, "experiment", {"steps": ["visit", "signup"], "variant": "variant", "unit": "session", **RANGE})
    want = funnel_oracle(events, ["visit", "signup"], DAY, T0, T0 + 12 * DAY, prop="variant", unit="session_id")
    assert {repr(v["value"]): [v["sessions"], v["converted"]] for v in out["variants"]} == want["groups"]
    assert out["sessions_without_variant"] == 0
    assert out["events_without_session"] == want["anonymous"] and out["unit"] == "session"


def test_paths_equal_oracle(loaded: tuple[LiveHub, list[dict[str, Any]]]) -> None:
    """POST /api/v1/analytics/paths: every path and first next event, per user and per session."""
    hub, events = loaded
    for unit, field in (("user", "user_id"), ("session", "session_id")):
        for anchor, depth, window, w_us in (("visit", 2, "1d", DAY), ("signup", 3, "14d", 14 * DAY)):
            body = {"event": anchor, "steps": depth, "window": window, "top": 100, "unit": unit, **RANGE}
            out = _post(hub, "paths", body)
            want = paths_oracle(events, anchor, depth, w_us, T0, T0 + 12 * DAY, field)
            n = unit + "s"
            assert {tuple(p["events"]): p[n] for p in out["paths"]} == want["walks"]
            assert {x["event"]: x[n] for x in out["next"]} == want["firsts"]
            assert [p[n] for p in out["paths"]] == sorted(want["walks"].values(), reverse=True)
            assert out[n] == want["entered"] and out[f"{n}_without_next"] == want["entered"] - sum(
                want["firsts"].values()
            )
            assert out[f"events_without_{unit}"] == want["anonymous"]
            assert len(want["walks"]) > 3 and want["entered"] > sum(want["firsts"].values()) > 0
    top = _post(hub, "paths", {"event": "visit", "top": 2, **RANGE})
    assert len(top["paths"]) == 2 and len(top["next"]) == 2


def test_retention_equals_oracle(loaded: tuple[LiveHub, list[dict[str, Any]]]) -> None:
    hub, events = loaded
    end = T0 + 12 * DAY
    for start_event in ("signup", None):
        for bounded in (True, False):
            body: dict[str, Any] = {"period": "day", "periods": 9, "bounded": bounded, **RANGE}
            if start_event:
                body["start"] = {"event": start_event}
            out = _post(hub, "retention", body)
            want = retention_oracle(events, start_event, DAY, 9, T0, end, bounded)
            got = [(c["cohort"], c["users"], c["returned"]) for c in out["cohorts"]]
            assert got == [(format_ts(cs), n, cells) for cs, n, cells in want]
            assert any(v for _, _, cells in want for v in cells)  # not a table of zeros and nulls
    # A range with under half of the events: SQLite reads "any event" from the time index then.
    late = T0 + 7 * DAY
    out = _post(hub, "retention", {"period": "day", "periods": 3, "from": format_ts(late), "to": RANGE["to"]})
    want = retention_oracle(events, None, DAY, 3, late, end, True)
    assert [(c["users"], c["returned"]) for c in out["cohorts"]] == [(n, cells) for _, n, cells in want]
    assert sum(n for _, n, _ in want) > 0
    week = _post(hub, "retention", {"period": "week", "periods": 1, **RANGE})
    want = retention_oracle(events, None, 7 * DAY, 1, T0, end, True)
    assert [(c["users"], c["returned"]) for c in week["cohorts"]] == [(n, cells) for _, n, cells in want]


def test_experiment_equals_oracle(loaded: tuple[LiveHub, list[dict[str, Any]]]) -> None:
    hub, events = loaded
    out = _post(hub, "experiment", {"steps": ["visit", "signup"], "variant": "variant", "window": "1d", **RANGE})
    want = funnel_oracle(events, ["visit", "signup"], DAY, T0, T0 + 12 * DAY, prop="variant")
    assert [(v["value"], v["users"], v["converted"]) for v in out["variants"]] == [
        (k, *want["groups"][repr(k)]) for k in ("A", "B")
    ]
    (cmp,) = out["comparisons"]
    a, b = want["groups"]["'A'"], want["groups"]["'B'"]
    assert cmp["control"] == "A" and cmp["variant"] == "B"
    assert cmp["difference"] == round(b[1] / b[0] - a[1] / a[0], 6)
    assert cmp["enough_data"] and "no significant difference" in cmp["reading"]  # planted equal
    assert out["users_without_variant"] == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_ztest_finds_a_planted_lift_and_no_aa_effect(seed: int) -> None:
    """5,000 users per arm: a 5-point lift (30% -> 35%) has z ~ 5; an A/A split stays p > 0.05."""
    end = T0 + 12 * DAY
    for planted, effect in (((0.3, 0.35), True), ((0.3, 0.3), False)):
        events = generate(seed, 10_000, T0, signup=planted, returning=0.0)
        g = funnel_oracle(events, ["visit", "signup"], 14 * DAY, T0, end, prop="variant")["groups"]
        (na, xa), (nb, xb) = g["'A'"], g["'B'"]
        c = stats.two_proportions(xa, na, xb, nb)
        assert c.enough_data
        assert (c.p_value < 0.05) is effect, (seed, planted, c)
        assert c.ci_low < (0.05 if effect else 0.0) < c.ci_high


def test_stats_small_samples_and_known_values() -> None:
    c = stats.two_proportions(200, 1000, 250, 1000)  # z = 0.05 / sqrt(.225 * .775 * .002) = 2.6774
    assert round(c.z, 4) == 2.6774 and round(c.p_value, 4) == 0.0074 and c.enough_data
    assert not stats.two_proportions(3, 50, 9, 50).enough_data
    assert not stats.two_proportions(0, 0, 0, 0).enough_data


def test_event_rows_order_and_values(store: Store) -> None:
    """The stream under every analysis: by user then (ts, id); no user_id left out; JSON values kept."""
    p = store.create_project("p", "k" * 32, [])
    t = T0 + HOUR
    evs = [
        event(kind="event", name="a", user_id="u2", ts=t, id="e1", attrs={"v": True}),
        event(kind="event", name="a", user_id="u1", ts=t + 5, id="e2", attrs={"v": 1}),
        event(kind="event", name="a", user_id="u1", ts=t + 5, id="e0", attrs={"v": "x"}),
        event(kind="event", name="a", ts=t, id="e3"),
        event(kind="event", name="b", user_id="u1", ts=t, id="e4"),
        event(kind="log", name="a", user_id="u1", ts=t, id="e5"),
    ]
    store.write_events(p.id, [normalize(e, t) for e in evs])
    rows = list(store.event_rows(p.id, [parse("name:a")], T0, T0 + DAY, "v"))
    assert rows == [("u1", t + 5, "e0", 0, "x"), ("u1", t + 5, "e2", 0, 1), ("u2", t, "e1", 0, True)]
    # Two steps: a row of both comes once per step; the value is step 0's only.
    rows = list(store.event_rows(p.id, [parse("name:b"), None], T0, T0 + DAY, "v"))
    assert rows == [
        ("u1", t, "e4", 0, None),
        ("u1", t, "e4", 1, None),
        ("u1", t + 5, "e0", 1, None),
        ("u1", t + 5, "e2", 1, None),
        ("u2", t, "e1", 1, None),
    ]
    assert list(store.event_rows(p.id, [], T0, T0 + DAY)) == []
    # Times only: no ids, no values, and one row per (user, ts) of a step (e0 and e2 share theirs).
    rows = list(store.event_rows(p.id, [parse("name:a"), None], T0, T0 + DAY, "v", ids=False))
    assert rows == [
        ("u1", t, "", 1, None),
        ("u1", t + 5, "", 0, None),
        ("u1", t + 5, "", 1, None),
        ("u2", t, "", 0, None),
        ("u2", t, "", 1, None),
    ]
    # Values of every JSON type, a null, and a key holding "=" beside the property (OpenSearch reads
    # "key=<json>" doc values: an ambiguous or absent one is read from the source).
    odd = [
        event(kind="event", name="o", user_id="u3", ts=t, id="g1", attrs={"v": [1, "b", True]}),
        event(kind="event", name="o", user_id="u3", ts=t + 1, id="g2", attrs={"v.x": 1, "w": "v=1"}),
        event(kind="event", name="o", user_id="u3", ts=t + 2, id="g3", attrs={"v": None, "w": 1}),
        event(kind="event", name="o", user_id="u3", ts=t + 3, id="g4", attrs={"v": "=", "v=": "1", "v=x": 2}),
        event(kind="event", name="o", user_id="u3", ts=t + 4, id="g5", attrs={"v": 1.5}),
        event(kind="event", name="o", user_id="u3", ts=t + 5, id="g6", attrs={"v=x": 2}),
    ]
    store.write_events(p.id, [normalize(e, t) for e in odd])
    rows = list(store.event_rows(p.id, [parse("name:o")], T0, T0 + DAY, "v"))
    assert [r[4] for r in rows] == [[1, "b", True], None, None, "=", 1.5, None]
    # By session: the session_id leads, rows without one are left out, with or without a user.
    sess = [
        event(kind="event", name="s", user_id="u1", session_id="s2", ts=t, id="f1"),
        event(kind="event", name="s", session_id="s1", ts=t + 1, id="f2"),
        event(kind="event", name="s", user_id="u1", ts=t, id="f3"),
    ]
    store.write_events(p.id, [normalize(e, t) for e in sess])
    rows = list(store.event_rows(p.id, [parse("name:s")], T0, T0 + DAY, None, "session_id"))
    assert rows == [("s1", t + 1, "f2", 0, None), ("s2", t, "f1", 0, None)]


def test_event_rows_in_pages_and_ranges(store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many pages and parallel user ranges (OpenSearch: pages of 7 rows, ranges from 20 rows,
    so ties of (user, ts) straddle pages) give the rows of an oracle sorted in Python."""
    if store_url.startswith("opensearch"):
        monkeypatch.setattr("obshub.store.opensearch.reader._MAX_WINDOW", 7)
        monkeypatch.setattr("obshub.store.opensearch.reader._SPLIT_MIN", 20)
    p = store.create_project("p", "k" * 32, [])
    rng = random.Random(5)
    t = T0 + HOUR
    evs = []
    for n in range(300):
        user = f"u{rng.randrange(40)}"
        ts = t + rng.randrange(6)  # many ties within a user
        evs.append(event(kind="event", name=rng.choice("ab"), user_id=user, ts=ts, id=f"r{n:03d}", attrs={"v": n % 3}))
    store.write_events(p.id, [normalize(e, t) for e in evs])
    rows = list(store.event_rows(p.id, [parse("name:a"), None], T0, T0 + DAY, "v"))
    want = sorted(
        [(e["user_id"], e["ts"], e["id"], 0, e["attrs"]["v"]) for e in evs if e["name"] == "a"]
        + [(e["user_id"], e["ts"], e["id"], 1, None) for e in evs]
    )
    assert rows == want
    times = list(store.event_rows(p.id, [parse("name:a"), None], T0, T0 + DAY, None, ids=False))
    assert times == sorted({(u, ts, "", s, None) for u, ts, _, s, _ in want})


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("funnel", {"steps": ["a"]}, "steps"),
        ("funnel", {"steps": ["a", 3]}, "steps[1]"),
        ("funnel", {"steps": ["a", {"event": "b", "q": "level:nope("}]}, "steps[1].q"),
        ("funnel", {"steps": ["a", "b"], "window": "soon"}, "window"),
        ("funnel", {"steps": ["a", "b"], "order": "strictest"}, "order"),
        ("funnel", {"steps": ["a", "b"], "unit": "device"}, "unit"),
        ("funnel", {"steps": ["a", "b"], "unit": 1}, "unit"),
        ("experiment", {"steps": ["a", "b"], "variant": "v", "unit": "visit"}, "unit"),
        ("paths", {}, "event"),
        ("paths", {"event": "a", "steps": 0}, "steps"),
        ("paths", {"event": "a", "top": 101}, "top"),
        ("paths", {"event": {"event": "a", "q": "x:("}}, "event.q"),
        ("paths", {"event": "a", "window": "later"}, "window"),
        ("funnel", {"steps": ["a", "b"], "breakdown": "x'y"}, "breakdown"),
        ("funnel", {"steps": ["a", "b"], "from": "now", "to": "-1d"}, "to"),
        ("funnel", [1], "body"),
        ("retention", {"period": "month"}, "period"),
        ("retention", {"periods": 0}, "periods"),
        ("retention", {"bounded": "yes"}, "bounded"),
        ("retention", {"start": {"event": ""}}, "start.event"),
        ("experiment", {"steps": ["a", "b"]}, "variant"),
        ("experiment", {"steps": ["a", "b"], "variant": "v", "control": "Z"}, "control"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(hub: LiveHub, path: str, body: Any, field: str) -> None:
    with hub.client(hub.read_token) as c:
        r = c.post(f"/api/v1/analytics/{path}", json=body)
        assert r.status_code == 400, r.text
        assert field in r.text
        assert c.post(f"/api/v1/analytics/{path}", content=b"{nope").status_code == 400
    with hub.client(hub.ingest_token) as c:  # the read token only
        assert c.post(f"/api/v1/analytics/{path}", json=body).status_code in (401, 403)


def test_series_with_filter_and_breakdown(loaded: tuple[LiveHub, list[dict[str, Any]]]) -> None:
    """`q` and `breakdown` on GET /api/v1/analytics/series: per-value day series, counts and
    distinct users, against the generated events; the values beyond `top` are `other`."""
    hub, events = loaded
    end = T0 + 12 * DAY
    visits = [e for e in events if e["name"] == "visit" and T0 <= e["ts"] < end and e["attrs"].get("variant") == "B"]
    for unique in ("0", "1"):
        params = {"event": "visit", "q": "variant:B", "breakdown": "plan", "top": "2", "interval": "1d", **RANGE}
        r = hub.get("/api/v1/analytics/series", unique=unique, **params)
        assert r.status_code == 200, r.text
        out = r.json()

        def series(evs: list[dict[str, Any]], unique: str = unique) -> list[int]:
            days: list[set[Any] | list[Any]] = [set() if unique == "1" else [] for _ in range(12)]
            for e in evs:
                d = days[(e["ts"] - T0) // DAY]
                d.add(e.get("user_id")) if isinstance(d, set) else d.append(e)
            return [len({u for u in d if u is not None}) if isinstance(d, set) else len(d) for d in days]

        assert [p["count"] for p in out["points"]] == series(visits)
        counts: dict[str, int] = {}
        for e in visits:  # booleans are no group (docs/aggregate.md): they count in `other`
            if not isinstance(e["attrs"]["plan"], bool):
                counts[repr(e["attrs"]["plan"])] = counts.get(repr(e["attrs"]["plan"]), 0) + 1
        shown = [repr(g["value"]) for g in out["breakdown"]]
        assert len(shown) == 2 and min(counts[k] for k in shown) >= max(
            [c for k, c in counts.items() if k not in shown], default=0
        )
        for g in out["breakdown"]:
            assert [p["count"] for p in g["points"]] == series(
                [e for e in visits if e["attrs"]["plan"] == g["value"] and type(e["attrs"]["plan"]) is type(g["value"])]
            )
        rest = [e for e in visits if repr(e["attrs"]["plan"]) not in shown or isinstance(e["attrs"]["plan"], bool)]
        assert [p["count"] for p in out["other"]["points"]] == series(rest)
    for bad, field in (
        ({"q": "level:("}, "column"),
        ({"breakdown": "a,b"}, "breakdown"),
        ({"breakdown": "plan", "top": "0"}, "top"),
    ):
        r = hub.get("/api/v1/analytics/series", event="visit", **bad)
        assert r.status_code == 400 and field in r.text, r.text


def test_funnel_rules_on_hand_made_sequences() -> None:
    """The documented rules, one user at a time (rows: ts, id, step, value)."""
    judge = funnels.judge_user
    w = 100
    # The window's boundary is inclusive: a step exactly `window` after the entry counts, 1 µs more does not.
    assert judge([(0, "a", 0, None), (100, "b", 1, None)], 2, w, "sequential").depth == 2  # type: ignore[union-attr]
    assert judge([(0, "a", 0, None), (101, "b", 1, None)], 2, w, "sequential").depth == 1  # type: ignore[union-attr]
    # First qualifying sequence: the oldest entry that reaches the deepest step (not the oldest entry).
    r = judge(
        [(0, "a", 0, "x"), (500, "b", 0, "y"), (550, "c", 1, None), (560, "d", 0, "z"), (600, "e", 1, None)],
        2,
        w,
        "sequential",
    )
    assert r is not None and (r.depth, r.times, r.value) == (2, (500, 550), "y")
    # Same microsecond: ordered by id, and one event never fills two steps (a repeated step).
    assert judge([(5, "b", 0, None), (5, "a", 1, None)], 2, w, "sequential").depth == 1  # type: ignore[union-attr]
    assert judge([(5, "a", 0, None), (5, "b", 1, None)], 2, w, "sequential").depth == 2  # type: ignore[union-attr]
    one_visit = [(5, "a", 0, None), (5, "a", 1, None)]  # the same event as both steps of visit, visit
    assert judge(one_visit, 2, w, "sequential").depth == 1  # type: ignore[union-attr]
    # Steps out of order: `sequential` stops at step 2, `any` takes steps 2..n in any order.
    rows = [(0, "a", 0, None), (10, "c", 2, None), (20, "b", 1, None)]
    assert judge(rows, 3, w, "sequential").times == (0, 20)  # type: ignore[union-attr]
    assert judge(rows, 3, w, "any").times == (0, 20, 20)  # type: ignore[union-attr]
    assert judge([(0, "a", 1, None)], 2, w, "sequential") is None  # no entry

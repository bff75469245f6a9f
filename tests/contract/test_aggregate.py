"""`aggregate` (GET/POST /api/v1/aggregate) gives the same answer on both stores: every measure,
group level, `other` and time bucket over generated data is compared with a brute-force Python
oracle. Exact for counts, sums, minima, maxima, averages (up to float rounding) and, at this
size, `unique` on OpenSearch too (HyperLogLog++ below its precision threshold); percentiles are
exact on SQLite (linear interpolation between the closest ranks) and within TDigest's tolerance
on OpenSearch (docs/aggregate.md, "Tolerances")."""

from __future__ import annotations

import csv
import io
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from obshub.store.base import AggBucket, AggregateRequest
from obshub.store.querylang import parse
from tests.factories import now_us
from tests.hubproc import LiveHub

MIN = 60_000_000
HOUR = 60 * MIN
SERVICES = ("api", "web", "auth", "billing", "search", "mailer")
ROUTES = ("/", "/cart", "/checkout", "/login", "/search", "/orders/{id}", "/account", "/static")
Ev = dict[str, Any]


def _events(t0: int, n: int = 700, seed: int = 7) -> list[Ev]:
    """Skewed services and routes, 60 users (or none), `duration_ms` as an int, a float, a string
    ("12": not a number), a boolean or missing; debug events the query leaves out, and events
    just outside the range."""
    rng = random.Random(seed)
    out: list[Ev] = []
    for i in range(n):
        attrs: dict[str, Any] = {}
        kind = rng.random()
        if kind < 0.55:
            attrs["duration_ms"] = rng.randint(1, 2000)
        elif kind < 0.8:
            attrs["duration_ms"] = round(rng.lognormvariate(4, 1), 3)
        elif kind < 0.85:
            attrs["duration_ms"] = str(rng.randint(1, 50))
        elif kind < 0.9:
            attrs["duration_ms"] = rng.random() < 0.5
        if rng.random() < 0.9:  # numbers as group keys; a string "500" is another group
            attrs["status"] = rng.choice((200, 200, 200, 404, 500, "500", 301))
        if rng.random() < 0.8:
            attrs["route"] = rng.choices(ROUTES, weights=(9, 7, 5, 5, 3, 3, 1, 1))[0]
        ev: Ev = {
            "id": f"agg-{seed}-{i}",
            "ts": t0 + rng.randrange(3 * HOUR),
            "message": f"request {i}",
            "level": rng.choices(("info", "warning", "error", "debug"), weights=(70, 10, 5, 15))[0],
            "host": f"web-{rng.randint(1, 4)}",
            "attrs": attrs,
        }
        if rng.random() < 0.95:
            ev["service"] = rng.choices(SERVICES, weights=(30, 25, 15, 10, 10, 3))[0]
        if rng.random() < 0.8:
            ev["user_id"] = f"u{rng.randint(1, 60)}"
        out.append(ev)
    for j, dt in enumerate((-1, 3 * HOUR, 3 * HOUR + 5 * MIN)):  # outside [t0, t0 + 3 h)
        out.append({"id": f"agg-out-{seed}-{j}", "ts": t0 + dt, "message": "outside", "service": "api"})
    return out


# -- the oracle ----------------------------------------------------------------------------------


def _key(ev: Ev, field: str) -> Any:
    if field.startswith("attrs."):
        v = ev.get("attrs", {}).get(field[6:])
        return v if isinstance(v, str | int | float) and not isinstance(v, bool) else None
    return ev.get(field)


def _number(ev: Ev, field: str) -> float | None:
    v = ev.get("attrs", {}).get(field[6:])
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _quantile(xs: list[float], q: float) -> float:
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[round(q * 100) - 1]


def _measure(req: AggregateRequest, evs: list[Ev]) -> Any:
    if req.op == "count":
        return len(evs)
    assert req.field is not None
    if req.op == "unique":
        return len({e[req.field] for e in evs if e.get(req.field) is not None})
    xs = sorted(x for e in evs if (x := _number(e, req.field)) is not None)
    if not xs:
        return None
    if req.op in ("sum", "avg"):
        return math.fsum(xs) / (len(xs) if req.op == "avg" else 1)
    if req.op in ("min", "max"):
        return xs[0] if req.op == "min" else xs[-1]
    return _quantile(xs, int(req.op[1:]) / 100)


def _top(evs: list[Ev], field: str, n: int) -> list[Any]:
    counts = Counter(k for e in evs if (k := _key(e, field)) is not None)
    return [k for k, _ in sorted(counts.items(), key=lambda kc: (-kc[1], isinstance(kc[0], str), kc[0]))[:n]]


def oracle(req: AggregateRequest, all_events: list[Ev], matches: Callable[[Ev], bool]) -> AggBucket:
    evs = [e for e in all_events if req.start <= e["ts"] < req.end and matches(e)]

    def bucket(sub: list[Ev], key: Any = None) -> AggBucket:
        series = []
        if req.interval:
            by_t: dict[int, list[Ev]] = {}
            for e in sub:
                by_t.setdefault(e["ts"] // req.interval * req.interval, []).append(e)
            series = [(t, len(b), _measure(req, b)) for t, b in sorted(by_t.items())]
        return AggBucket(len(sub), _measure(req, sub), series, key)

    root = bucket(evs)
    if req.group_by:
        f1 = req.group_by[0]
        top1 = _top(evs, f1, req.top)
        for k1 in top1:
            in1 = [e for e in evs if _key(e, f1) == k1]
            g = bucket(in1, k1)
            if len(req.group_by) > 1:
                f2 = req.group_by[1]
                top2 = _top(in1, f2, req.top)
                g.groups = [bucket([e for e in in1 if _key(e, f2) == k2], k2) for k2 in top2]
                g.other = bucket([e for e in in1 if _key(e, f2) not in top2])
            root.groups.append(g)
        root.other = bucket([e for e in evs if _key(e, f1) not in top1])
    return root


# -- comparing -----------------------------------------------------------------------------------


def _close(req: AggregateRequest, got: Any, want: Any, values: list[float], approx_pct: bool, where: str) -> None:
    if want is None or got is None:
        assert got == want, where
        return
    if req.op in ("count", "unique"):
        assert got == want, where
    elif req.op.startswith("p") and approx_pct:
        # TDigest: the answer lies within 1% of the ranks (plus one rank) of the exact one.
        q, n = int(req.op[1:]) / 100, len(values)
        lo = values[max(0, math.floor((q - 0.01) * (n - 1)) - 1)]
        hi = values[min(n - 1, math.ceil((q + 0.01) * (n - 1)) + 1)]
        assert lo - 1e-6 <= got <= hi + 1e-6, f"{where}: {got} outside [{lo}, {hi}] (exact {want})"
    else:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), where


def compare(
    req: AggregateRequest,
    got: AggBucket,
    want: AggBucket,
    evs: list[Ev],
    approx_pct: bool,
    where: str = "total",
    level: int = 0,
) -> None:
    """`evs`: the events of `want`, to judge a percentile by rank."""

    def numbers(sub: list[Ev]) -> list[float]:
        if req.field is None or not req.field.startswith("attrs."):
            return []
        return sorted(x for e in sub if (x := _number(e, req.field)) is not None)

    assert got.count == want.count, where
    _close(req, got.value, want.value, numbers(evs), approx_pct, where)
    assert [(t, n) for t, n, _ in got.series] == [(t, n) for t, n, _ in want.series], where
    for (t, _, gv), (_, _, wv) in zip(got.series, want.series, strict=True):
        in_t = [e for e in evs if req.interval and e["ts"] // req.interval * req.interval == t]
        _close(req, gv, wv, numbers(in_t), approx_pct, f"{where} @ {t}")
    assert [g.key for g in got.groups] == [g.key for g in want.groups], where
    assert (got.other is None) == (want.other is None), where
    field = req.group_by[level] if level < len(req.group_by) else None
    for g, w in zip(got.groups, want.groups, strict=True):
        assert field is not None
        compare(req, g, w, [e for e in evs if _key(e, field) == w.key], approx_pct, f"{where} > {w.key}", level + 1)
    if got.other is not None and want.other is not None:
        assert field is not None
        keys = [w.key for w in want.groups]
        sub = [e for e in evs if _key(e, field) not in keys]
        compare(req, got.other, want.other, sub, approx_pct, f"{where} > (other)", level + 1)


MEASURES = [
    ("count", None),
    ("unique", "user_id"),
    ("unique", "host"),
    ("sum", "attrs.duration_ms"),
    ("avg", "attrs.duration_ms"),
    ("min", "attrs.duration_ms"),
    ("max", "attrs.duration_ms"),
    ("p50", "attrs.duration_ms"),
    ("p90", "attrs.duration_ms"),
    ("p95", "attrs.duration_ms"),
    ("p99", "attrs.duration_ms"),
]
SHAPES: list[tuple[tuple[str, ...], int, int | None]] = [
    ((), 10, None),
    ((), 10, 10 * MIN),
    (("service",), 3, None),
    (("service",), 10, 15 * MIN),
    (("service", "attrs.route"), 3, None),
    (("attrs.route", "user_id"), 2, 30 * MIN),
    (("attrs.status", "service"), 4, 60 * MIN),
    (("attrs.nothing",), 5, 30 * MIN),  # no group at all: every event is `other`
]


@pytest.fixture
def loaded(hub: LiveHub) -> tuple[LiveHub, list[Ev], int]:
    t0 = now_us() - 5 * HOUR
    t0 -= t0 % HOUR
    evs = _events(t0)
    for i in range(0, len(evs), 250):
        r = hub.ingest(evs[i : i + 250])
        assert r.status_code == 200, r.text
    return hub, evs, t0


def test_every_measure_group_level_and_bucket_matches_the_oracle(loaded: tuple[LiveHub, list[Ev], int]) -> None:
    hub, evs, t0 = loaded
    approx = hub.store_url.startswith("opensearch")
    query = parse("-level:debug")

    def matches(e: Ev) -> bool:
        return e.get("level", "info") != "debug"

    for op, field in MEASURES:
        for group_by, top, interval in SHAPES:
            req = AggregateRequest(query, t0, t0 + 3 * HOUR, op, field, group_by, top, interval)
            want = oracle(req, evs, matches)
            got = hub.store.aggregate(hub.project_id, req)
            inside = [e for e in evs if t0 <= e["ts"] < t0 + 3 * HOUR and matches(e)]
            compare(req, got, want, inside, approx, f"{op}({field}) by {group_by} every {interval}")
    nothing = AggregateRequest(parse("service:nowhere"), t0, t0 + 3 * HOUR, "p50", "attrs.duration_ms", ("service",))
    got = hub.store.aggregate(hub.project_id, nothing)
    assert (got.count, got.value, got.groups, got.other) == (0, None, [], AggBucket(0, None))


def test_the_api_answers_get_post_and_csv_alike(loaded: tuple[LiveHub, list[Ev], int]) -> None:
    hub, evs, t0 = loaded
    params = {
        "q": "-level:debug",
        "from": str(t0),
        "to": str(t0 + 3 * HOUR),
        "measure": "p95(duration_ms)",
        "group_by": "service,route",
        "top": "3",
        "interval": "30m",
    }
    r = hub.get("/api/v1/aggregate", **params)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["measure"] == "p95(attrs.duration_ms)" and got["group_by"] == ["service", "attrs.route"]
    assert got["interval_s"] == 1800 and got["top"] == 3
    req = AggregateRequest(
        parse("-level:debug"), t0, t0 + 3 * HOUR, "p95", "attrs.duration_ms", ("service", "attrs.route"), 3, 30 * MIN
    )
    want = oracle(req, evs, lambda e: e.get("level", "info") != "debug")
    assert got["total"]["count"] == want.count
    assert [g["key"] for g in got["groups"]] == [g.key for g in want.groups]
    assert [[h["key"] for h in g["groups"]] for g in got["groups"]] == [[h.key for h in g.groups] for g in want.groups]
    assert got["other"]["count"] == want.other.count if want.other else False
    assert [p["count"] for p in got["total"]["series"]] == [n for _, n, _ in want.series]
    assert got["total"]["count"] == sum(g["count"] for g in got["groups"]) + got["other"]["count"]
    body = {**params, "from": t0, "to": t0 + 3 * HOUR, "group_by": ["service", "route"], "top": 3}
    with hub.client(hub.read_token) as c:
        posted = c.post("/api/v1/aggregate", json=body)
        assert posted.status_code == 200, posted.text
        assert posted.json() == got
        text = c.get("/api/v1/aggregate", params={**params, "format": "csv"})
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    assert rows[0]["row"] == "total" and int(rows[0]["count"]) == want.count
    whole = [r for r in rows if r["t"] == ""]
    assert [r["row"] for r in whole].count("group") == len(want.groups) + sum(len(g.groups) for g in want.groups)
    assert int(next(r for r in whole if r["row"] == "other" and r["group_1"] == "")["count"]) == want.other.count


def test_auto_interval_picks_at_most_200_buckets(loaded: tuple[LiveHub, list[Ev], int]) -> None:
    hub = loaded[0]
    for span, step in (("1h", 60), ("24h", 600), ("7d", 3600), ("30d", 4 * 3600), ("300d", 86400)):
        r = hub.get("/api/v1/aggregate", **{"from": f"-{span}", "interval": "auto"})
        assert r.status_code == 200, r.text
        assert r.json()["interval_s"] == step, span
    r = hub.get("/api/v1/aggregate", **{"from": "-24h", "interval": "auto"}).json()
    assert len(r["total"]["series"]) <= 200 and r["total"]["count"] == sum(p["count"] for p in r["total"]["series"])


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"measure": "median(duration_ms)"}, "measure"),
        ({"measure": "sum"}, "measure"),
        ({"measure": "sum(service)"}, "measure"),
        ({"measure": "unique(duration_ms)"}, "measure"),
        ({"measure": "count(x)"}, "measure"),
        ({"measure": "p95(a'b)"}, "measure"),
        ({"group_by": "a,b,c"}, "group_by"),
        ({"group_by": "service,service"}, "group_by"),
        ({"group_by": "message"}, "group_by"),
        ({"group_by": 'x"y'}, "group_by"),
        ({"top": "0"}, "top"),
        ({"top": "101"}, "top"),
        ({"top": "ten"}, "top"),
        ({"interval": "30s"}, "interval"),
        ({"interval": "2d"}, "interval"),
        ({"interval": "1m", "from": "-2d"}, "interval"),
        ({"interval": "1m", "group_by": "service,host", "top": "20"}, "top"),
        ({"from": "yesterday"}, "from"),
        ({"from": "-1h", "to": "-2h"}, "to"),
        ({"q": "level:nonsense"}, "level"),
        ({"q": "(a"}, ""),
        ({"format": "xml"}, "format"),
        ({"bogus": "1"}, "bogus"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(hub: LiveHub, params: dict[str, str], names: str) -> None:
    r = hub.get("/api/v1/aggregate", **params)
    assert r.status_code == 400, r.text
    assert names in r.json()["error"], r.json()


def test_bad_json_bodies_are_400(hub: LiveHub) -> None:
    with hub.client(hub.read_token) as c:
        for body, name in (
            ([1, 2], "body"),
            ({"top": True}, "top"),
            ({"group_by": [1]}, "group_by"),
            ({"measure": 5}, "measure"),
            ({"from": 1.5}, "from"),
        ):
            r = c.post("/api/v1/aggregate", json=body)
            assert r.status_code == 400 and name in r.json()["error"], (body, r.text)
        r = c.post("/api/v1/aggregate", content=b"{", headers={"content-type": "application/json"})
        assert r.status_code == 400
    assert hub.get("/api/v1/aggregate", token=hub.ingest_token).status_code == 403  # a read token is needed


def test_the_largest_requests_the_bounds_allow_are_answered(loaded: tuple[LiveHub, list[Ev], int]) -> None:
    """At the caps (top 100 x 100 of attributes; a day per minute by 10 groups; two levels per
    minute), neither store refuses: OpenSearch's search.max_buckets (65,535) is never reached."""
    hub, evs, t0 = loaded
    day = {"from": str(t0 + 3 * HOUR - 24 * HOUR), "to": str(t0 + 3 * HOUR)}
    for params in (
        {**day, "group_by": "route,status", "top": "100", "measure": "p99(duration_ms)"},
        {**day, "group_by": "route", "top": "10", "interval": "1m", "measure": "unique"},
        {**day, "group_by": "status,route", "top": "3", "interval": "1m", "measure": "max(duration_ms)"},
    ):
        r = hub.get("/api/v1/aggregate", **params)
        assert r.status_code == 200, (params, r.text)
        body = r.json()
        assert body["total"]["count"] == sum(g["count"] for g in body["groups"]) + body["other"]["count"]
        assert body["total"]["count"] == sum(1 for e in evs if t0 - 21 * HOUR <= e["ts"] < t0 + 3 * HOUR)
    too_many = {**day, "group_by": "route,status", "top": "4", "interval": "1m"}  # 1,441 x 25 cells
    assert "25000 cells" in hub.get("/api/v1/aggregate", **too_many).json()["error"]

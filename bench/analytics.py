"""Product analytics (docs/analytics.md) at scale: p50/p99 in ms of one HTTP request against a
real hub process, over `n` tracked events (`kind=event`) of ~n / 15 users spread over 35 days
ending when the store was built.

    .venv/bin/python bench/analytics.py [--sizes 1M] [--samples 3] [--data DIR] [--rebuild]
        [--opensearch local|opensearch://HOST:PORT?replicas=0] [--os-sizes 1M]

The cases (30 days ending at the store's newest event):
- a 3-step funnel: visit -> signup -> purchase, 1-day window, broken down by `plan`;
- weekly retention of the users' first visit, 4 weeks, any event as the return;
- the series of distinct users per day of `visit`, broken down by `plan` (top 5 + other).

SQLite stores are built once per size under --data (default ~/.cache/obshub/bench-analytics) and
reused while younger than 12 h; so are OpenSearch stores on a node given by URL (under a fixed
prefix, its token kept under --data), while `local` builds afresh in a node of its own.

Memory: the hub's peak resident set (VmHWM) while the case ran, in MB, each case on a hub of its
own, and in brackets its growth over the idle hub's: what the analysis held at most.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _hub import HUB_PIDS, hub_process, peak_rss_mb, process_cpu_s, reset_peak_rss
from lookup import _label, _pct, _size, _with_prefix, opensearch_base
from obshub import auth
from obshub.events import normalize
from obshub.store import open_store
from tests.opensearch_node import drop_prefix

DAY_US = 86_400_000_000
MAX_AGE_S = 12 * 3600
PLANS = ("free", "free", "free", "pro", "team", "enterprise")


def _events(n: int, seed: int, now: int) -> Iterator[dict[str, Any]]:
    """~15 events a user (~65,000 users at 1M): visits on active days (a decaying return curve), signups (30%),
    purchases (half the signups), and other events the analyses skip."""
    rng = random.Random(seed)
    made = 0
    u = 0
    while made < n:
        uid = f"u{u}"
        plan = rng.choice(PLANS)
        t = now - 35 * DAY_US + rng.randrange(34 * DAY_US)
        day = 0
        while made < n and t + day * DAY_US < now:
            base = t + day * DAY_US
            for k in range(rng.randint(1, 5)):
                made += 1
                name = "visit" if k == 0 else rng.choice(("page_view", "page_view", "click", "search"))
                yield {
                    "kind": "event",
                    "name": name,
                    "user_id": uid,
                    "ts": base + k * 60_000_000,
                    "attrs": {"plan": plan},
                }
            if day == 0 and rng.random() < 0.3:
                made += 1
                yield {"kind": "event", "name": "signup", "user_id": uid, "ts": base + rng.randrange(DAY_US)}
                if rng.random() < 0.5:
                    made += 1
                    yield {"kind": "event", "name": "purchase", "user_id": uid, "ts": base + rng.randrange(2 * DAY_US)}
            day += max(1, int(rng.expovariate(0.2)))
        u += 1


def build(url: str, n: int, seed: int) -> tuple[str, int]:
    """(read token, newest ts) of a new store holding `n` generated events."""
    store = open_store(url)
    store.open()
    try:
        creds = auth.create_project(store, "bench", "http://127.0.0.1:8480")
        pid = creds["project_id"]
        now = time.time_ns() // 1000
        batch = []
        for raw in _events(n, seed, now):
            batch.append(normalize(raw, now))
            if len(batch) == 5_000:
                store.write_events(pid, batch)
                batch = []
        if batch:
            store.write_events(pid, batch)
        return creds["read_token"], now
    finally:
        store.close()


def sqlite_store(data: Path, n: int, seed: int, rebuild: bool) -> tuple[str, str, int]:
    db = data / f"analytics-{_label(n)}-s{seed}.db"
    meta = db.with_suffix(".json")
    url = f"sqlite:///{db}"
    if not rebuild and meta.exists() and time.time() - meta.stat().st_mtime < MAX_AGE_S:
        raw = json.loads(meta.read_text())
        return url, raw["read_token"], raw["now_us"]
    data.mkdir(parents=True, exist_ok=True)
    for p in data.glob(db.name + "*"):
        p.unlink()
    t = time.perf_counter()
    token, now = build(url, n, seed)
    print(f"  built {_label(n)} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    meta.write_text(json.dumps({"read_token": token, "now_us": now}))
    return url, token, now


def opensearch_store(base: str, data: Path, n: int, seed: int, rebuild: bool) -> tuple[str, str, int]:
    """A store under a fixed prefix on a node that outlives the run, reused like SQLite's; on
    `local` (a node of this run) always a new one."""
    if "prefix=" in base:
        raise SystemExit("--opensearch: give a node URL without a prefix")
    url = _with_prefix(base, f"bench-analytics-{_label(n).lower()}-s{seed}")
    node = re.sub(r"[^A-Za-z0-9]+", "-", base.split("://", 1)[-1].split("?", 1)[0])
    meta = data / f"os-{node}-{_label(n)}-s{seed}.json"
    if not rebuild and meta.exists() and time.time() - meta.stat().st_mtime < MAX_AGE_S:
        raw = json.loads(meta.read_text())
        if raw.get("url") == url and _holds(url, n):
            return url, raw["read_token"], raw["now_us"]
    drop_prefix(url)
    t = time.perf_counter()
    token, now = build(url, n, seed)
    print(f"  built {_label(n)} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    data.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"url": url, "read_token": token, "now_us": now}))
    return url, token, now


def _holds(url: str, n: int) -> bool:
    """Whether the store under `url` still holds the `n` events built (a node restarted on a new
    data dir does not)."""
    store = open_store(url)
    try:
        store.open()
        return sum(store.count(p.id, None, None, None) for p in store.list_projects()) == n
    except Exception:  # anything (the index gone, another store): rebuild
        return False
    finally:
        store.close()


def cases(now: int) -> dict[str, tuple[str, dict[str, Any]]]:
    rng = {"from": str(now - 30 * DAY_US), "to": str(now + 1)}
    return {
        "funnel visit > signup > purchase, 1 d window, by plan": (
            "funnel",
            {"steps": ["visit", "signup", "purchase"], "window": "1d", "breakdown": "plan", **rng},
        ),
        "weekly retention of first visit, 4 weeks": (
            "retention",
            {"start": {"event": "visit"}, "period": "week", "periods": 4, **rng},
        ),
        "series: users per day of visit by plan": (
            "series",
            {"event": "visit", "interval": "1d", "unique": "1", "breakdown": "plan", **rng},
        ),
    }


@dataclass
class Cell:
    p50: float  # ms
    p99: float
    samples: int
    peak_mb: float  # the hub's peak RSS
    growth_mb: float  # ... over the idle hub's
    hub_cpu: float  # CPU seconds per request, median: steady on a loaded machine, unlike wall time
    node_cpu: float | None  # the OpenSearch node's, when its pid is known


def measure(url: str, token: str, now: int, samples: int, node_pid: int | None = None) -> dict[str, Cell]:
    """Each case against a hub of its own: its peak RSS is that case's, not the last one's (a
    Python process keeps the memory it once held)."""
    out: dict[str, Cell] = {}
    headers = {"Authorization": f"Bearer {token}"}
    for name, (kind, params) in cases(now).items():
        with (
            hub_process(url) as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600) as c,
        ):
            pid = HUB_PIDS[port]
            reset_peak_rss(pid)
            before = peak_rss_mb(pid)
            times: list[float] = []
            cpu: list[float] = []
            node: list[float] = []
            for _ in range(samples + 1):  # the first warms the caches
                c0, n0 = process_cpu_s(pid), process_cpu_s(node_pid) if node_pid else 0.0
                t = time.perf_counter()
                if kind == "series":
                    r = c.get("/api/v1/analytics/series", params=params)
                else:
                    r = c.post(f"/api/v1/analytics/{kind}", json=params)
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    raise SystemExit(f"{name}: answered {r.status_code}: {r.text[:300]}")
                times.append(dt * 1000)
                cpu.append(process_cpu_s(pid) - c0)
                node.append(process_cpu_s(node_pid) - n0 if node_pid else 0.0)
            peak = peak_rss_mb(pid)
        times, cpu, node = times[1:], cpu[1:], node[1:]
        cell = Cell(
            statistics.median(times),
            _pct(times, 99),
            len(times),
            peak,
            peak - before,
            statistics.median(cpu),
            statistics.median(node) if node_pid else None,
        )
        out[name] = cell
        print(
            f"    {name}: p50 {cell.p50:,.0f} ms, hub CPU {cell.hub_cpu:.2f} s, node CPU {cell.node_cpu or 0:.2f} s, "
            f"peak RSS {peak:,.0f} MB ({peak - before:+,.0f})",
            file=sys.stderr,
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1M", help="SQLite store sizes, e.g. 100k,1M (default 1M; empty: none)")
    ap.add_argument("--samples", type=int, default=3, help="timed requests per case (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path.home() / ".cache/obshub/bench-analytics")
    ap.add_argument("--rebuild", action="store_true", help="build the SQLite stores again")
    ap.add_argument("--opensearch", help="also measure OpenSearch: `local` or an opensearch:// URL")
    ap.add_argument("--os-sizes", default="1M", help="OpenSearch store sizes (default 1M)")
    ap.add_argument("--os-pid", type=int, help="the OpenSearch node's pid (a node on this machine): its CPU too")
    args = ap.parse_args()

    columns: list[str] = []
    results: dict[str, dict[str, Cell]] = {}
    for n in map(_size, filter(None, args.sizes.split(","))):
        col = f"SQLite {_label(n)}"
        print(col, file=sys.stderr)
        url, token, now = sqlite_store(args.data, n, args.seed, args.rebuild)
        results[col] = measure(url, token, now, args.samples)
        columns.append(col)
    if args.opensearch:
        with ExitStack() as stack:
            base = stack.enter_context(opensearch_base(args.opensearch))
            for n in map(_size, args.os_sizes.split(",")):
                col = f"OpenSearch {_label(n)}"
                print(col, file=sys.stderr)
                if args.opensearch == "local":
                    url = _with_prefix(base, f"bn{os.getpid()}x{n}")
                    token, now = build(url, n, args.seed)
                else:
                    url, token, now = opensearch_store(base, args.data, n, args.seed, args.rebuild)
                results[col] = measure(url, token, now, args.samples, args.os_pid)
                columns.append(col)
    names = list(dict.fromkeys(k for r in results.values() for k in r))
    print(
        "\np50/p99 in ms (one HTTP request each, after one warm-up); CPU seconds per request, median, of the"
        "\nhub and of the OpenSearch node (with --os-pid); the hub's peak RSS in MB (its growth over idle)\n"
    )
    print("| case | " + " | ".join(f"{c} p50/p99 ms | {c} CPU s hub/node | {c} peak MB" for c in columns) + " |")
    print("|---|" + "---|---|---|" * len(columns))
    for name in names:
        cells = []
        for col in columns:
            v = results[col].get(name)
            if v is None:
                cells += ["-", "-", "-"]
                continue
            node = "-" if v.node_cpu is None else f"{v.node_cpu:.2f}"
            cells += [
                f"{v.p50:,.0f}/{v.p99:,.0f}",
                f"{v.hub_cpu:.2f}/{node}",
                f"{v.peak_mb:,.0f} ({v.growth_mb:+,.0f})",
            ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| samples | " + " | ".join(f"{min(v.samples for v in results[c].values())} | | " for c in columns) + "|")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The aggregation API (`GET /api/v1/aggregate`) as data grows: p50/p99 in ms of one HTTP request
against a real hub process, on the fleet stores of bench/lookup.py (7 days of realistic fleet
data ending when the store was built, bench/fleet.py).

    .venv/bin/python bench/aggregate.py [--sizes 1M,5M] [--samples 10]
        [--opensearch local|opensearch://HOST:PORT?replicas=0] [--os-sizes 1M] [--data DIR] [--rebuild]

The cases (times relative to the store's newest event):
- count by service per minute over 24 h (1,441 buckets x 10 services + other);
- p95 of `duration_ms` by route (the access lines' `attrs.path`, top 10 + other) over 24 h;
- unique users per day over 30 days (every stored event: the data spans 7 days);
- count by service and host (top 10 x 10, no buckets) over 24 h.

SQLite stores are built once per (size, seed) under --data (default ~/.cache/obshub/bench-aggregate,
the same files as bench/lookup.py's: copy them there to skip the build) and reused while younger
than 12 h; OpenSearch stores are built afresh each run (`local` starts a node on this machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _hub import hub_process
from lookup import Meta, _label, _pct, _size, _with_prefix, build, opensearch_base, sqlite_store

DAY_US = 86_400_000_000
SLOW_S = 5.0


def cases(meta: Meta, sample: int = 0) -> dict[str, dict[str, str]]:
    """Each sample's range ends `sample` µs later: a different request every time, so
    OpenSearch's shard request cache (which keeps `size: 0` answers) never answers from memory."""
    now = meta.now_us + 1 + sample
    day = {"from": str(now - DAY_US), "to": str(now)}
    return {
        "count by service per minute, 24 h": {**day, "group_by": "service", "interval": "1m"},
        "p95(duration_ms) by route, 24 h": {**day, "measure": "p95(duration_ms)", "group_by": "path"},
        "unique users per day, 30 d": {
            "from": str(now - 30 * DAY_US),
            "to": str(now),
            "measure": "unique(user_id)",
            "interval": "1d",
        },
        "count by service, host (10 x 10), 24 h": {**day, "group_by": "service,host"},
    }


def measure(port: int, meta: Meta, samples: int) -> dict[str, tuple[float, float, int]]:
    out: dict[str, tuple[float, float, int]] = {}
    headers = {"Authorization": f"Bearer {meta.read_token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600) as c:
        for name in cases(meta):
            times: list[float] = []
            for i in range(samples + 1):  # the first request warms the caches
                t = time.perf_counter()
                r = c.get("/api/v1/aggregate?" + urlencode(cases(meta, i)[name]))
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    raise SystemExit(f"{name}: answered {r.status_code}: {r.text[:300]}")
                if i >= 1 or dt > SLOW_S:
                    times.append(dt * 1000)
                if dt > SLOW_S and len(times) >= 3:
                    break
            out[name] = (statistics.median(times), _pct(times, 99), len(times))
            print(f"    {name}: p50 {out[name][0]:,.0f} ms, p99 {out[name][1]:,.0f} ms", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1M", help="SQLite store sizes, e.g. 100k,1M,5M (default 1M; empty: none)")
    ap.add_argument("--samples", type=int, default=10, help="timed requests per case (default 10)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--data",
        type=Path,
        default=Path.home() / ".cache/obshub/bench-aggregate",
        help="where built SQLite stores are kept (default ~/.cache/obshub/bench-aggregate)",
    )
    ap.add_argument("--rebuild", action="store_true", help="build the SQLite stores again")
    ap.add_argument("--opensearch", help="also measure OpenSearch: `local` or an opensearch:// URL")
    ap.add_argument("--os-sizes", default="1M", help="OpenSearch store sizes (default 1M)")
    args = ap.parse_args()

    columns: list[str] = []
    results: dict[str, dict[str, tuple[float, float, int]]] = {}
    for n in map(_size, filter(None, args.sizes.split(","))):
        col = f"SQLite {_label(n)}"
        print(col, file=sys.stderr)
        url, meta = sqlite_store(args.data, n, args.seed, args.rebuild)
        with hub_process(url) as port:
            results[col] = measure(port, meta, args.samples)
        columns.append(col)
    if args.opensearch:
        with ExitStack() as stack:
            base = stack.enter_context(opensearch_base(args.opensearch))
            for n in map(_size, args.os_sizes.split(",")):
                col = f"OpenSearch {_label(n)}"
                print(col, file=sys.stderr)
                url = _with_prefix(base, f"ba{os.getpid()}x{n}")
                meta = build(url, n, args.seed)
                with hub_process(url) as port:
                    results[col] = measure(port, meta, args.samples)
                columns.append(col)
    names = list(dict.fromkeys(k for r in results.values() for k in r))
    print("\np50/p99 in ms (one HTTP request each, after one warm-up; samples per cell in the last row)\n")
    print("| case | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in names:
        cells = [f"{v[0]:,.0f}/{v[1]:,.0f}" if (v := results[col].get(name)) else "-" for col in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| samples | " + " | ".join(str(min(v[2] for v in results[c].values())) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

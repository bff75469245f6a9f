"""Lookups as data grows: trace, user journey, word search, pages (search, users, errors,
analytics) and the errors list, p50/p99 in ms over HTTP against a real hub process, on stores of
realistic fleet data (bench/fleet.py); then the hub's resident memory after those queries.

    .venv/bin/python bench/lookup.py [--sizes 100k,1M,5M] [--samples 30]
        [--opensearch local|opensearch://HOST:PORT?replicas=0] [--os-sizes 1M] [--data DIR] [--rebuild]

SQLite stores are built once per (size, seed) under --data (default ~/.cache/obshub/bench-lookup)
and reused while younger than 12 h (the pages' default range is the last 24 h, so an older
store would measure empty pages); building 5M events takes several minutes and prints progress.
OpenSearch stores (`--opensearch`) are built afresh each run into a fresh index prefix;
`local` starts a node on this machine (scripts/opensearch.sh) and stops it afterwards.

Each query is timed as one HTTP request (wall clock, JSON or HTML included), on `--samples`
different ids where the query takes one (request ids, typical users), after two warm-up
requests. A query slower than 5 s gets 3 samples only, so a slow store still finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _hub import hub_process
from fleet import Fleet, generate
from obshub import auth
from obshub.digest import Scrubber, digest
from obshub.events import normalize
from obshub.store import open_store

MAX_AGE_S = 12 * 3600
BATCH = 5000
SLOW_S = 5.0


@dataclass
class Meta:
    """What a built store holds, kept beside it: tokens and the ids the lookups pick from."""

    n: int
    seed: int
    now_us: int
    read_token: str
    request_ids: list[str]
    heaviest: tuple[str, int]
    typical: list[str]  # users with 5-15 requests in the week
    rare: int


def _size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1:], 1)
    return int(float(s.rstrip("km")) * mult)


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def build(store_url: str, n: int, seed: int) -> Meta:
    """Generate `n` events into a new store through the ingest path's normalize and digest."""
    store = open_store(store_url)
    store.open()
    try:
        creds = auth.create_project(store, "bench", "http://127.0.0.1:8480")
        pid = creds["project_id"]
        now = time.time_ns() // 1000
        fleet = Fleet(n)
        scrubber = Scrubber()
        batch: list[dict] = []
        started = time.perf_counter()
        done = 0
        for raw in generate(n, seed, now, fleet=fleet):
            batch.append(normalize(raw, now))
            if len(batch) == BATCH:
                groups = digest(batch, scrubber)
                store.write_events(pid, batch, list(groups.values()))
                done += len(batch)
                batch = []
                if done % 100_000 == 0:
                    rate = done / (time.perf_counter() - started)
                    print(
                        f"\r  building {_label(n)}: {done:,}/{n:,} events, {rate:,.0f}/s, "
                        f"~{(n - done) / rate:,.0f} s left   ",
                        end="",
                        file=sys.stderr,
                        flush=True,
                    )
        if batch:
            store.write_events(pid, batch, list(digest(batch, scrubber).values()))
        print(
            f"\r  built {_label(n)}: {n:,} events in {time.perf_counter() - started:,.0f} s" + " " * 30, file=sys.stderr
        )
    finally:
        store.close()
    users = fleet.users_by_activity()
    typical = [u for u, c in users if 5 <= c <= 15]
    random.Random(seed).shuffle(typical)
    return Meta(n, seed, now, creds["read_token"], fleet.request_ids, users[0], typical[:200], fleet.rare)


def sqlite_store(data: Path, n: int, seed: int, rebuild: bool) -> tuple[str, Meta]:
    db = data / f"fleet-{_label(n)}-s{seed}.db"
    meta_path = db.with_suffix(".json")
    url = f"sqlite:///{db}"
    if not rebuild and meta_path.exists() and time.time() - meta_path.stat().st_mtime < MAX_AGE_S:
        raw = json.loads(meta_path.read_text())
        raw["heaviest"] = tuple(raw["heaviest"])
        return url, Meta(**raw)
    for p in data.glob(f"{db.name}*"):
        p.unlink()
    meta_path.unlink(missing_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    meta = build(url, n, seed)
    meta_path.write_text(json.dumps(asdict(meta)))
    return url, meta


@contextmanager
def opensearch_base(spec: str) -> Iterator[str]:
    if spec != "local":
        yield spec
        return
    from tests.opensearch_node import OpenSearchNode

    with tempfile.TemporaryDirectory(prefix="obshub-bench-os-") as d:
        node = OpenSearchNode(Path(d))
        print("  starting a local OpenSearch node", file=sys.stderr)
        node.start()
        try:
            yield node.store_url
        finally:
            node.stop()


def _with_prefix(url: str, prefix: str) -> str:
    return url + ("&" if "?" in url else "?") + f"prefix={prefix}"


@dataclass
class Query:
    name: str
    path: Callable[[int], str]  # sample number -> path with query string
    page: bool = False  # a web page: needs the login cookie


def queries(meta: Meta) -> list[Query]:
    rids, typical = meta.request_ids, meta.typical or [meta.heaviest[0]]
    heavy = meta.heaviest[0]
    return [
        Query("trace by request id", lambda i: f"/api/v1/trace/{rids[i % len(rids)]}"),
        Query("user timeline (API), typical", lambda i: f"/api/v1/users/{typical[i % len(typical)]}/timeline"),
        Query("user timeline (API), heaviest user", lambda i: f"/api/v1/users/{heavy}/timeline"),
        Query("rare word `vshard`", lambda i: "/api/v1/search?q=vshard&from=-8d"),
        Query("common word `GET`", lambda i: "/api/v1/search?q=GET&from=-8d"),
        Query("page /search?q=level:error", lambda i: "/search?q=level%3Aerror", page=True),
        Query("page /search (facets)", lambda i: "/search", page=True),
        # No index on host: the page walks the day's events newest first, facets until 10,000 match.
        Query("page /search?q=host:web-07", lambda i: "/search?q=host%3Aweb-07", page=True),
        Query("page /users/<id>, typical", lambda i: f"/users/{typical[i % len(typical)]}", page=True),
        Query("page /users/<id>, heaviest", lambda i: f"/users/{heavy}", page=True),
        Query("/api/v1/errors", lambda i: "/api/v1/errors"),
        Query("page /errors", lambda i: "/errors", page=True),
        Query("page /analytics", lambda i: "/analytics", page=True),
    ]


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


RSS = "hub RSS after the queries, MiB"


def _rss_mib(client: httpx.Client) -> float:
    """The hub's resident memory from its own /metrics (prometheus_client's process collector)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1]) / 2**20
    return float("nan")


def measure(port: int, meta: Meta, samples: int) -> dict[str, tuple[float, float, int]]:
    base = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {meta.read_token}"}, timeout=600)
    web = httpx.Client(base_url=base, timeout=600)
    r = web.post("/login", data={"token": meta.read_token, "next": "/search"}, headers={"Origin": base})
    if r.status_code != 303:
        raise SystemExit(f"login failed: {r.status_code} {r.text[:200]}")
    out: dict[str, tuple[float, float, int]] = {}
    try:
        for q in queries(meta):
            c = web if q.page else api
            times: list[float] = []
            for i in range(samples + 2):
                t = time.perf_counter()
                r = c.get(q.path(i))
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    raise SystemExit(f"{q.name}: {q.path(i)} answered {r.status_code}: {r.text[:300]}")
                if i >= 2 or dt > SLOW_S:
                    times.append(dt * 1000)
                if dt > SLOW_S and len(times) >= 3:
                    break
            out[q.name] = (statistics.median(times), _pct(times, 99), len(times))
            print(f"    {q.name}: p50 {out[q.name][0]:,.0f} ms, p99 {out[q.name][1]:,.0f} ms", file=sys.stderr)
        rss = _rss_mib(api)
        out[RSS] = (rss, rss, 1)
    finally:
        api.close()
        web.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100k,1M", help="SQLite store sizes, e.g. 100k,1M,3M,5M (default 100k,1M)")
    ap.add_argument("--samples", type=int, default=30, help="timed requests per query (default 30)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--data",
        type=Path,
        default=Path.home() / ".cache/obshub/bench-lookup",
        help="where built SQLite stores are kept (default ~/.cache/obshub/bench-lookup)",
    )
    ap.add_argument("--rebuild", action="store_true", help="build the SQLite stores again")
    ap.add_argument("--opensearch", help="also measure OpenSearch: `local` or an opensearch:// URL")
    ap.add_argument("--os-sizes", default="1M", help="OpenSearch store sizes (default 1M)")
    args = ap.parse_args()

    columns: list[str] = []
    heaviest: dict[str, int] = {}  # column -> the heaviest user's requests in the week
    results: dict[str, dict[str, tuple[float, float, int]]] = {}
    for n in map(_size, args.sizes.split(",")):
        print(f"SQLite {_label(n)}", file=sys.stderr)
        url, meta = sqlite_store(args.data, n, args.seed, args.rebuild)
        with hub_process(url) as port:
            results[f"SQLite {_label(n)}"] = measure(port, meta, args.samples)
        columns.append(f"SQLite {_label(n)}")
        heaviest[columns[-1]] = meta.heaviest[1]
    if args.opensearch:
        with ExitStack() as stack:
            base = stack.enter_context(opensearch_base(args.opensearch))
            for n in map(_size, args.os_sizes.split(",")):
                print(f"OpenSearch {_label(n)}", file=sys.stderr)
                url = _with_prefix(base, f"bl{os.getpid()}x{n}")
                meta = build(url, n, args.seed)
                with hub_process(url) as port:
                    results[f"OpenSearch {_label(n)}"] = measure(port, meta, args.samples)
                columns.append(f"OpenSearch {_label(n)}")
                heaviest[columns[-1]] = meta.heaviest[1]
    names = list(dict.fromkeys(k for r in results.values() for k in r))
    print("\np50/p99 in ms (one HTTP request each; samples per cell in the last row)\n")
    print("| query | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in names:
        cells = []
        for col in columns:
            v = results[col].get(name)
            cells.append("-" if not v else f"{v[0]:,.0f}" if name == RSS else f"{v[0]:,.0f}/{v[1]:,.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| heaviest user's requests | " + " | ".join(f"{heaviest[c]:,}" for c in columns) + " |")
    print(
        "| samples | "
        + " | ".join(str(min(v[2] for k, v in results[c].items() if k != RSS)) + "+" for c in columns)
        + " |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

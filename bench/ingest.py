"""Ingest throughput: the hub end to end (HTTP, NDJSON, validation, store) vs the same rows
inserted straight into the same SQLite schema, side by side in one run. The ratio is the figure
(this machine is shared and noisy; absolute numbers drift, ratios measured together do not).

    .venv/bin/python bench/ingest.py [--events 200000] [--batch 1000] [--senders 2] [--encoding zstd]

The hub runs as its own process (like production), fed by `--senders` client threads. One
process: `obshub serve --workers N` refuses N > 1 on SQLite (one writer owns the file; the
numbers behind that are in docs/opensearch.md "Workers"); bench/ingest_opensearch.py --workers
measures workers on OpenSearch.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hub import hub_process, post_all
from obshub.events import normalize
from obshub.store.sqlite import schema, writer
from tests.hubproc import make_project


def make_events(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    t0 = time.time_ns() // 1000 - 3_600_000_000
    hosts = [f"web-{i}" for i in range(1, 12)]
    words = [
        "user",
        "checkout",
        "cart",
        "payment",
        "provider",
        "timeout",
        "session",
        "login",
        "product",
        "cache",
        "miss",
        "db",
        "query",
    ]
    out = []
    for i in range(n):
        rid = f"req-{i // 5:08d}"
        out.append(
            {
                "id": f"bench-{seed}-{i}",
                "ts": t0 + i * 17,
                "level": rng.choice(("info", "info", "info", "debug", "warning", "error")),
                "message": " ".join(rng.choice(words) for _ in range(8)) + f" order={rng.randint(1, 10**6)}",
                "service": rng.choice(("shop-web", "shop-api")),
                "host": rng.choice(hosts),
                "request_id": rid,
                "trace_id": f"{i // 5:032x}",
                "user_id": f"u-{rng.randint(1, 5000)}",
                "logger": "shop.web",
                "attrs": {
                    "duration_ms": rng.randint(1, 900),
                    "path": rng.choice(("/", "/cart", "/checkout")),
                    "status": 200,
                },
            }
        )
    return out


def bench_raw_sqlite(events: list[dict[str, Any]], batch: int, path: Path) -> float:
    """Same schema, pragmas, durability and insert statements as the store; rows pre-built."""
    now = time.time_ns() // 1000
    rows = writer.to_rows(1, [normalize(e, now) for e in events])  # the store's own row shape
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA cache_size = -32768")
    conn.execute("PRAGMA temp_store = MEMORY")
    for stmt in schema.SCHEMA:
        conn.execute(stmt)
    t = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        last = conn.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
        # the store's own insert statements (multi-row INSERTs), without the hub around them
        # (no error groups in this data: `events` is only read for the groups it records)
        writer.write_batch(conn, 1, (), rows[i : i + batch], (), last)
        conn.execute(writer.INDEX_TEXT, (last,))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(rows)
    conn.close()
    return elapsed


def bench_hub(
    events: list[dict[str, Any]], batch: int, senders: int, encoding: str, store_url: str, workers: int = 1
) -> float:
    creds = make_project(store_url, "bench")
    cctx = zstandard.ZstdCompressor(level=1)
    bodies = []
    for i in range(0, len(events), batch):
        body = b"\n".join(orjson.dumps(e) for e in events[i : i + batch])
        bodies.append(cctx.compress(body) if encoding == "zstd" else body)
    headers = {"Authorization": f"Bearer {creds['ingest_token']}", "Content-Type": "application/x-ndjson"}
    if encoding == "zstd":
        headers["Content-Encoding"] = "zstd"
    with hub_process(store_url, workers) as port:
        elapsed = post_all(port, "/api/v1/ingest", headers, bodies, senders)
        r = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/search",
            params={"limit": 1, "q": "kind:log"},
            headers={"Authorization": f"Bearer {creds['read_token']}"},
        )
        assert r.status_code == 200 and r.json()["events"], "nothing stored"
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--encoding", choices=("identity", "zstd"), default="zstd")
    ap.add_argument(
        "--opensearch",
        nargs="?",
        const="start",
        default=None,
        metavar="URL",
        help="add the OpenSearch rows: against opensearch://host:port, or a node this bench "
        "starts (scripts/opensearch.sh) when no URL is given. Several alternating rounds "
        "with medians: bench/ingest_opensearch.py",
    )
    args = ap.parse_args()
    events = make_events(args.events)
    print(
        f"{args.events} events, batches of {args.batch}, {args.senders} senders, {args.encoding} bodies, "
        f"{os.cpu_count()} cores",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory() as d:
        raw = bench_raw_sqlite(events, args.batch, Path(d) / "raw.db")
        hub = bench_hub(events, args.batch, args.senders, args.encoding, f"sqlite:///{d}/hub.db")
    rows = [("raw sqlite3, same schema & statements", raw, raw), ("hub: HTTP -> validate -> sqlite store", hub, raw)]
    if args.opensearch:
        rows += _opensearch_rows(events, args)
    n = args.events
    print()
    print(f"| {'path':<40} | {'events':>8} | {'seconds':>7} | {'events/s':>9} | {'vs baseline':>11} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 9}|{'-' * 11}|{'-' * 13}|")
    for name, secs, base in rows:
        print(f"| {name:<40} | {n:>8} | {secs:>7.2f} | {n / secs:>9,.0f} | {base / secs:>11.2f} |")
    print("(baseline: raw sqlite3 for the sqlite rows, direct opensearch-py bulk for the opensearch rows)")


def _opensearch_rows(events: list[dict[str, Any]], args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """Direct opensearch-py bulk of the same documents vs the hub on that node, same run."""
    import ingest_opensearch as osb  # imports this module; only needed here

    with tempfile.TemporaryDirectory() as d:
        node = None
        base = args.opensearch
        if base == "start":
            from tests.opensearch_node import OpenSearchNode

            node = OpenSearchNode(Path(d) / "node").start()
            base = node.store_url
        try:
            osb.warm_up(base, args.batch, args.senders)  # a cold JVM makes whichever runs first look slow
            direct = osb.bench_direct(events, args.batch, args.senders, base)  # drops its own indices
            hub_url = osb.with_prefix(base, "hub")
            try:
                hub = bench_hub(events, args.batch, args.senders, args.encoding, hub_url)
            finally:
                osb.drop_prefix(hub_url)  # leave nothing behind on a cluster the user pointed us at
        finally:
            if node is not None:
                node.stop()
    return [
        ("direct opensearch-py bulk, same docs", direct, direct),
        ("hub: HTTP -> validate -> opensearch", hub, direct),
    ]


if __name__ == "__main__":
    main()

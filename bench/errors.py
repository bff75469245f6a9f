"""Error ingest throughput through the Sentry envelope endpoint, per store backend.

Each event is what sentry-sdk sends for a real exception: ~5 KB, a 30-frame stack, breadcrumbs,
request data; 50 distinct call sites so grouping and the group table do real work. Envelopes
are brotli-compressed like the SDK's default. Senders run in threads, the hub in its own process.

    .venv/bin/python bench/errors.py [--events 5000] [--senders 8,32] [--warmup 1000] [--opensearch URL]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import brotli
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hub import hub_process, post_all
from tests.hubproc import make_project
from tests.opensearch_node import drop_prefix


def sentry_event(rng: random.Random, site: int) -> dict[str, Any]:
    frames = [
        {
            "filename": f"/usr/lib/python3/site-packages/lib{i}/mod.py",
            "module": f"lib{i}.mod",
            "function": f"call_{i}",
            "lineno": 100 + i,
            "in_app": False,
            "context_line": f"    return next_handler(request, {i})",
        }
        for i in range(25)
    ]
    frames += [
        {
            "filename": f"/srv/shop/app/site{site}.py",
            "module": f"shop.site{site}",
            "function": f"handler_{j}",
            "lineno": 10 + rng.randint(0, 5),
            "in_app": True,
            "context_line": f"    value = cart[key_{j}]",
        }
        for j in range(5)
    ]
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error",
        "server_name": f"web-{rng.randint(1, 11)}",
        "release": "shop@1.4.2",
        "environment": "prod",
        "exception": {
            "values": [
                {
                    "type": "KeyError",
                    "value": f"'item-{rng.randint(1, 10**6)}'",
                    "module": None,
                    "stacktrace": {"frames": frames},
                    "mechanism": {"type": "generic", "handled": True},
                }
            ]
        },
        "user": {"id": f"u-{rng.randint(1, 5000)}", "ip_address": "10.0.0.1"},
        "tags": {"request_id": f"req-{rng.getrandbits(48):012x}"},
        "contexts": {
            "trace": {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16]},
            "runtime": {"name": "CPython", "version": "3.11.7"},
        },
        "breadcrumbs": {
            "values": [
                {
                    "timestamp": time.time(),
                    "category": "http",
                    "message": f"GET /api/items/{i}",
                    "data": {"status_code": 200},
                }
                for i in range(8)
            ]
        },
        "request": {
            "url": "https://shop.example.com/checkout",
            "method": "POST",
            "headers": {"User-Agent": "Mozilla/5.0", "Cookie": "sid=abc"},
        },
    }


def run(store_url: str, n: int, senders: int, warmup: int) -> tuple[float, int]:
    """Seconds for `n` events after `warmup` untimed ones (a production hub and node are warm:
    JIT, caches, the 50 groups already exist), and the mean event size."""
    creds = make_project(store_url, "bench-errors")
    key = creds["dsn"].split("//")[1].split("@")[0]
    rng = random.Random(3)
    bodies, size = [], 0
    for i in range(n + warmup):
        ev = orjson.dumps(sentry_event(rng, i % 50))
        size += len(ev)
        env = orjson.dumps({"event_id": "x"}) + b"\n" + orjson.dumps({"type": "event", "length": len(ev)}) + b"\n" + ev
        bodies.append(brotli.compress(env, quality=4))
    headers = {
        "X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7",
        "Content-Encoding": "br",
        "Content-Type": "application/x-sentry-envelope",
    }
    with hub_process(store_url) as port:
        path = f"/api/{creds['project_id']}/envelope/"
        post_all(port, path, headers, bodies[n:], senders)
        elapsed = post_all(port, path, headers, bodies[:n], senders)
        groups = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/errors", headers={"Authorization": f"Bearer {creds['read_token']}"}
        ).json()["groups"]
    assert sum(g["count"] for g in groups) == n + warmup, "not every event was stored"
    assert len(groups) == 50, f"expected 50 groups, got {len(groups)}"
    return elapsed, size // (n + warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument(
        "--senders",
        default="8,32",
        help="concurrent SDK connections, comma-separated: one row per value (a Sentry SDK "
        "sends from one worker thread per app process, so a fleet is dozens)",
    )
    ap.add_argument("--warmup", type=int, default=1000, help="untimed events sent first to each hub")
    ap.add_argument(
        "--opensearch",
        default=os.environ.get("OBSHUB_TEST_OPENSEARCH_URL"),
        help="also measure an OpenSearch store at this URL (opensearch://host:port)",
    )
    args = ap.parse_args()
    senders = [int(s) for s in args.senders.split(",")]
    rows = []
    for k in senders:
        with tempfile.TemporaryDirectory() as d:
            rows.append(("sqlite", k, *run(f"sqlite:///{d}/e.db", args.events, k, args.warmup)))
        if args.opensearch:
            sep = "&" if "?" in args.opensearch else "?"
            url = f"{args.opensearch}{sep}prefix=bench{uuid.uuid4().hex[:6]}"
            try:
                rows.append(("opensearch", k, *run(url, args.events, k, args.warmup)))
            finally:
                drop_prefix(url)  # leave nothing behind on a cluster the user pointed us at
    print(
        f"\n{args.events} Sentry error events per row (after {args.warmup} untimed), brotli envelopes, "
        f"30-frame stacks, {os.cpu_count()} cores; hub with default settings"
    )
    print(f"| {'store':<10} | {'senders':>7} | {'event size':>10} | {'seconds':>7} | {'events/s':>8} |")
    print(f"|{'-' * 12}|{'-' * 9}|{'-' * 12}|{'-' * 9}|{'-' * 10}|")
    for name, k, el, size in rows:
        print(f"| {name:<10} | {k:>7} | {size:>8} B | {el:>7.2f} | {args.events / el:>8,.0f} |")


if __name__ == "__main__":
    main()

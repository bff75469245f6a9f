"""Uptime at scale: N HTTP checks at one interval on one hub (SQLite store), against one local
test server that notes when each probe arrives.

The checks are the operator's `[[checks]]` tables (API checks stop at checks_max_per_project
and the network policy), each `GET http://127.0.0.1:<port>/c/<i>`. The hub runs as its own
process (`obshub serve`), the target in this one (asyncio: one thread, no per-request thread).

For every slot that opens inside the measured window (from `--warmup` s after the hub is ready
to the end of `--duration`, less one timeout for the last probes to finish), a probe is
expected; its lateness is when it reached the target minus when its slot opened (the check's
`offset_s` inside the interval, docs/uptime.md). Results stored: `kind=check` results of those
slots, read from the store after the hub stopped. Hub CPU: its CPU seconds / wall seconds over
the window (100% = one core).

    .venv/bin/python bench/checks.py [--checks 1000,10000] [--interval 60] [--duration 150]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hub import hub_process, window
from obshub.store import Store, open_store
from obshub.store.base import Event, SearchRequest
from obshub.store.querylang import And, Field
from obshub.uptime.model import Check
from tests.hubproc import make_project


class Target:
    """An asyncio HTTP/1.1 server in a thread: answers every GET 200 and notes (path, arrival)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[int, float]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            at = time.time()
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            path = line.split(b" ")[1] if line.count(b" ") >= 2 else b""
            if path.startswith(b"/c/"):
                self.arrivals.append((int(path[3:]), at))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (OSError, ValueError):
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    @contextmanager
    def running(self) -> Iterator[Target]:
        self._thread.start()
        self._ready.wait(10)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@dataclass
class Row:
    checks: int
    expected: int
    started: int
    p50: float
    p99: float
    worst: float
    stored: int
    hub_cpu: float  # share of one core over the window
    us_per_probe: float


def _checks(n: int, interval: int, port: int) -> tuple[str, list[Check]]:
    """The config file and the same checks as `Check`s (for their slots)."""
    tables, checks = [], []
    for i in range(n):
        name, target = f"c{i:05d}", f"http://127.0.0.1:{port}/c/{i}"
        tables.append(f'[[checks]]\nname = "{name}"\ntarget = "{target}"\ninterval_s = {interval}\ntimeout_s = 5\n')
        checks.append(Check(name=name, target=target, interval_s=interval, timeout_s=5.0, project="default"))
    return "\n".join(tables), checks


def run(n: int, interval: int, duration: float, warmup: float, tmp: Path) -> Row:
    store_url = f"sqlite:///{tmp}/checks-{n}.db"
    make_project(store_url, "default")
    with Target().running() as target:
        text, checks = _checks(n, interval, target.port)
        config = tmp / f"checks-{n}.toml"
        config.write_text(text)
        with hub_process(store_url, OBSHUB_CONFIG=str(config), OBSHUB_LOG_LEVEL="warning"):
            time.sleep(warmup)
            with window() as w:
                t0 = time.time()
                time.sleep(duration)
                t1 = time.time()
            time.sleep(6)  # the probes of the window's last slots finish (timeout_s = 5) and are stored
    # Slots that opened in [t0, t1 - 6): each must have reached the target once.
    expected: dict[tuple[int, int], float] = {}
    for i, c in enumerate(checks):
        first = math.ceil((t0 - c.offset_s) / interval)
        slot = first
        while c.slot_start(slot) < t1 - 6:
            expected[(i, slot)] = c.slot_start(slot)
            slot += 1
    late: list[float] = []
    seen: set[tuple[int, int]] = set()
    for i, at in target.arrivals:
        key = (i, checks[i].slot(at))
        if key in expected and key not in seen:
            seen.add(key)
            late.append(at - expected[key])
    store = open_store(store_url)
    store.open()
    try:
        project = store.get_project("default")
        assert project is not None
        pid = project.id
        stored = 0
        q = And((Field("kind", "=", "check"), Field("attrs.up", "exists")))
        for ev in _all(store, pid, q, int(t0 * 1e6) - 10_000_000):
            i = int(ev["name"][1:])
            if (i, ev["attrs"]["slot"]) in expected:
                stored += 1
    finally:
        store.close()
    late.sort()
    cpu = w.cpu.get("hub", 0.0)
    return Row(
        checks=n,
        expected=len(expected),
        started=len(seen),
        p50=statistics.median(late) if late else math.nan,
        p99=late[min(len(late) - 1, int(len(late) * 0.99))] if late else math.nan,
        worst=late[-1] if late else math.nan,
        stored=stored,
        hub_cpu=100 * cpu / w.seconds,
        us_per_probe=1e6 * cpu / max(len(seen), 1),
    )


def _all(store: Store, pid: int, q: And, start: int) -> Iterator[Event]:
    """Every match from `start` on, oldest first."""
    after = None
    while True:
        page = store.search(pid, SearchRequest(q, start, None, 1000, after, True))
        yield from page
        if len(page) < 1000:
            return
        after = (page[-1]["ts"], page[-1]["id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--checks", default="1000,10000", help="comma-separated check counts, one hub each (default 1000,10000)"
    )
    ap.add_argument("--interval", type=int, default=60, help="interval_s of every check (default 60)")
    ap.add_argument(
        "--duration", type=float, default=150, help="measured seconds per run, >= 2 intervals (default 150)"
    )
    ap.add_argument(
        "--warmup",
        type=float,
        default=20,
        help="seconds after the hub is ready before measuring (default 20: the start's catch-up probes run)",
    )
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="obshub-bench-checks-") as d:
        for n in (int(x) for x in args.checks.split(",")):
            rows.append(run(n, args.interval, args.duration, args.warmup, Path(d)))
            r = rows[-1]
            print(f"  {n} checks done: {r.started}/{r.expected} started, p99 {r.p99:.3f} s", file=sys.stderr)
    print(f"\nHTTP checks, interval {args.interval} s, {args.duration:g} s measured, SQLite store, one hub\n")
    print(
        f"| {'checks':>6} | {'expected':>8} | {'started':>8} | {'p50 late':>8} | {'p99 late':>8} | {'max late':>8} "
        f"| {'stored':>8} | {'hub CPU':>7} | {'µs/probe':>8} |"
    )
    print("|" + "|".join("-" * (w + 2) for w in (6, 8, 8, 8, 8, 8, 8, 7, 8)) + "|")
    for r in rows:
        print(
            f"| {r.checks:>6,} | {r.expected:>8,} | {r.started:>8,} | {r.p50:>6.3f} s | {r.p99:>6.3f} s "
            f"| {r.worst:>6.3f} s | {r.stored:>8,} | {r.hub_cpu:>6.1f}% | {r.us_per_probe:>8,.0f} |"
        )


if __name__ == "__main__":
    main()

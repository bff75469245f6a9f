"""Alert evaluation time per pass vs the number of rules: 10, 100, 1,000 rules of mixed kinds
(threshold counts, averages, p95s and distinct users over 5m/15m/1h windows, absences, error
frequency/new/regression, check down) on a store of realistic fleet data (bench/fleet.py: 1M
events over a week), through `AlertEngine.run_once` as the scheduler runs it.

    .venv/bin/python bench/alerts.py [--events 1M] [--rules 10,100,1000] [--passes 3]
        [--opensearch local|opensearch://HOST:PORT?replicas=0] [--data DIR]

SQLite: the store of bench/lookup.py (built under --data if absent or older than 12 h) is
copied to a temporary file first, since the engine writes its state records. OpenSearch
(`--opensearch`): built afresh into a fresh index prefix (`local` starts a node here).
Each size reports the first pass (every rule's first state written) and the median of the next
`--passes` (the steady state: only changes are written), with the records each wrote. The
target of issue 24: <= 5 s per pass at 1,000 rules on SQLite.

`--latency`: event -> notification latency end to end instead. An `obshub serve` process per
interval (`--intervals`, alert_interval_s) with a webhook notifier to a local receiver
(group_wait 0s) and an error rule when = "new"; `--n` new distinct errors are POSTed at random
moments (a uniform 0..interval pause before each); each one's latency is the webhook's receipt of
its alert minus the acknowledgement of its ingest. Prints p50/p95/max against issue 24's bound,
p95 <= interval + 5 s. SQLite in a temporary file; `--opensearch` measures that store too.

    .venv/bin/python bench/alerts.py --latency [--intervals 5,10,30] [--n 20]
"""

from __future__ import annotations

import argparse
import math
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _hub import hub_process
from fleet import HOSTS, SERVICES
from lookup import _label, _size, _with_prefix, build, opensearch_base, sqlite_store
from obshub.alerts.engine import AlertEngine
from obshub.alerts.model import Route
from obshub.ingest import pipeline
from obshub.settings import load_settings
from obshub.store import Store, open_store
from obshub.telemetry import Telemetry
from obshub.uptime.model import Check, ProbeResult
from obshub.uptime.writes import result_event
from tests.alerts.receiver import Receiver
from tests.hubproc import make_project

CHECKS = 10  # checks with a probe a minute over the last hour (the fleet data has none)


class Count:
    """A Notify that counts the alerts it is handed (delivery is not what is measured)."""

    def __init__(self) -> None:
        self.alerts = 0

    def update(self, rule_key: str, route: Route, alerts: Any, now_us: int) -> None:
        self.alerts += len(alerts)


def rules(n: int, windows: tuple[str, ...] = ("5m", "15m", "1h")) -> list[dict[str, Any]]:
    """`n` distinct rules, kinds mixed in fixed proportions (40% threshold, 20% absence, 20%
    error, 20% check), windows taken in turn from `windows`."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        svc, host, w = SERVICES[i % len(SERVICES)], HOSTS[i % len(HOSTS)], windows[i % len(windows)]
        name = f"r{i:04d}"
        k = i % 10
        if k < 4:
            measure = ("count", "avg(attrs.duration_ms)", "p95(attrs.duration_ms)", "unique(user_id)")[(i // 10) % 4]
            query = (f"service:{svc} level:error", f"host:{host}", f"service:{svc} attrs.status:>={400 + i % 200}")[
                i % 3
            ]
            out.append(
                {
                    "name": name,
                    "kind": "threshold",
                    "query": query,
                    "measure": measure,
                    "window": w,
                    "threshold": 1000 + i,
                }
            )
        elif k < 6:
            out.append({"name": name, "kind": "absence", "query": f"host:{host} service:{svc}", "window": w})
        elif k < 8:
            if i % 3 == 0:
                out.append({"name": name, "kind": "error", "when": ("new", "regression")[i % 2]})
            else:
                out.append(
                    {"name": name, "kind": "error", "when": "frequency", "threshold": 50 + i, "window": w}
                    | ({"query": f"service:{svc}"} if i % 2 else {})
                )
        else:
            out.append({"name": name, "kind": "check", "check": f"check-{i % CHECKS}", "failures": 2 + i % 3})
    return [{**r, "project": "bench"} for r in out]


def add_checks(store: Store, pid: int, now: int) -> None:
    """CHECKS checks probed every minute over the hour before `now`; every third one down."""
    evs = []
    for c in range(CHECKS):
        check = Check(f"check-{c}", f"https://c{c}.example", project="bench")
        for m in range(60):
            at = now - (60 - m) * 60_000_000
            evs.append(result_event(pid, check, m, ProbeResult(c % 3 != 0 or m < 50, "GET"), at))
    pipeline.store_events(store, pid, evs, now)


def measure(
    store_url: str, now: int, sizes: list[int], passes: int, windows: tuple[str, ...]
) -> Iterator[tuple[int, float, int, float, int, int]]:
    store = open_store(store_url)
    store.open()
    try:
        project = store.get_project("bench")
        assert project is not None
        add_checks(store, project.id, now)
        base = load_settings({}, store=store_url)
        for n in sizes:
            for rec in store.list_records("alert-state"):  # each size starts from no state
                store.delete_record("alert-state", rec.key)
            engine = AlertEngine(replace(base, alerts=tuple(rules(n, windows))), store, Telemetry.create(), Count())
            first = engine.run_once(now)
            steady = [engine.run_once(now + (k + 1) * 30_000_000) for k in range(passes)]
            yield (
                n,
                first.seconds,
                first.changed,
                statistics.median(s.seconds for s in steady),
                max(s.changed for s in steady),
                steady[-1].firing,
            )
    finally:
        store.close()


def table(
    backend: str, events: int, windows: tuple[str, ...], rows: list[tuple[int, float, int, float, int, int]]
) -> None:
    print(f"\n{backend}, {_label(events)} events, windows {'/'.join(windows)}")
    print(f"{'rules':>6} {'first pass s':>13} {'written':>8} {'pass s (median)':>16} {'written':>8} {'firing':>7}")
    for n, first, w1, steady, w2, firing in rows:
        print(f"{n:>6} {first:>13.3f} {w1:>8} {steady:>16.3f} {w2:>8} {firing:>7}")


def _latency_config(path: Path, interval_s: int, receiver: Receiver) -> None:
    path.write_text(
        f"alert_interval_s = {interval_s}\n"
        f'[[notifiers]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}/hook"\n'
        '[[alerts]]\nname = "new-errors"\nproject = "bench"\nkind = "error"\nwhen = "new"\ngroup_wait = "0s"\n'
    )


def _error(i: int, run: str) -> bytes:
    """A new error group each time: its own type and function (the fingerprint's parts)."""
    frame = {"module": "bench.app", "function": f"handler_{run}_{i}", "lineno": 10, "in_app": True}
    return orjson.dumps(
        {
            "kind": "error",
            "service": "bench",
            "error": {"type": f"BenchError{i}", "value": f"lat-{run}-{i}", "stack": [frame]},
        }
    )


def latency(store_url: str, interval_s: int, n: int, seed: int) -> list[float]:
    """Seconds from each error's ingest acknowledgement to the webhook's receipt of its alert."""
    run = f"{interval_s}x{seed}"
    token = re.compile(rf"lat-{re.escape(run)}-(\d+)")
    receiver = Receiver().start()
    acked: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="obshub-bench-latency-") as d:
            cfg = Path(d) / "hub.toml"
            _latency_config(cfg, interval_s, receiver)
            ingest = str(make_project(store_url, "bench")["ingest_token"])
            with hub_process(store_url, OBSHUB_CONFIG=str(cfg)) as port, httpx.Client(timeout=30) as c:
                rng = random.Random(seed)
                for i in range(n):
                    time.sleep(rng.uniform(0, interval_s))
                    r = c.post(
                        f"http://127.0.0.1:{port}/api/v1/ingest",
                        content=_error(i, run),
                        headers={"Authorization": f"Bearer {ingest}"},
                    )
                    r.raise_for_status()
                    acked[i] = time.time()
                deadline = time.monotonic() + interval_s + 30
                while len(_received(receiver, token)) < n and time.monotonic() < deadline:
                    time.sleep(0.1)
    finally:
        receiver.stop()
    got = _received(receiver, token)
    missing = sorted(set(acked) - set(got))
    if missing:
        raise RuntimeError(f"interval {interval_s} s: no notification for errors {missing}")
    return [got[i] - acked[i] for i in range(n)]


def _received(receiver: Receiver, token: re.Pattern[str]) -> dict[int, float]:
    """Error number -> when its alert first reached the webhook."""
    out: dict[int, float] = {}
    for p in list(receiver.posted):
        for a in p.body["alerts"]:
            m = token.search(a["annotations"].get("summary", ""))
            if m and a["status"] == "firing":
                out.setdefault(int(m.group(1)), p.at)
    return out


def latency_table(backend: str, rows: list[tuple[int, list[float]]]) -> None:
    print(f"\nEvent -> notification latency, {backend} (ingest acknowledged -> webhook received, group_wait 0s)")
    print(f"{'interval s':>10} {'N':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'bound s':>8} {'p95 within':>11}")
    for interval_s, lat in rows:
        xs = sorted(lat)
        p50, p95 = xs[math.ceil(0.5 * len(xs)) - 1], xs[math.ceil(0.95 * len(xs)) - 1]
        bound = interval_s + 5
        ok = "yes" if p95 <= bound else "NO"
        print(f"{interval_s:>10} {len(xs):>4} {p50:>7.2f} {p95:>7.2f} {xs[-1]:>7.2f} {bound:>8} {ok:>11}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", default="1M", help="events in the store, e.g. 100k or 1M (default 1M)")
    ap.add_argument("--rules", default="10,100,1000", help="rule counts (default 10,100,1000)")
    ap.add_argument("--passes", type=int, default=3, help="steady-state passes timed per size (default 3)")
    ap.add_argument("--windows", default="5m,15m,1h", help="rule windows, taken in turn (default 5m,15m,1h)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--data",
        type=Path,
        default=Path.home() / ".cache" / "obshub" / "bench-lookup",
        help="where bench/lookup.py's SQLite stores are kept (default ~/.cache/obshub/bench-lookup)",
    )
    ap.add_argument("--opensearch", help="also measure OpenSearch: `local` or an opensearch:// URL")
    ap.add_argument("--latency", action="store_true", help="measure event -> notification latency instead")
    ap.add_argument("--intervals", default="5,10,30", help="--latency: alert_interval_s values (default 5,10,30)")
    ap.add_argument("--n", type=int, default=20, help="--latency: new errors per interval (default 20)")
    args = ap.parse_args()
    if args.latency:
        intervals = [int(x) for x in args.intervals.split(",") if x.strip()]
        with tempfile.TemporaryDirectory(prefix="obshub-bench-latency-") as d:
            rows = [(i, latency(f"sqlite:///{d}/latency-{i}.db", i, args.n, args.seed)) for i in intervals]
        latency_table("SQLite", rows)
        if args.opensearch:
            with opensearch_base(args.opensearch) as base:
                stamp = int(time.time())
                rows = [
                    (i, latency(_with_prefix(base, f"bench-latency-{i}-{stamp}"), i, args.n, args.seed))
                    for i in intervals
                ]
            latency_table("OpenSearch", rows)
        return 0
    events = _size(args.events)
    sizes = [int(_size(x)) for x in args.rules.split(",") if x.strip()]
    windows = tuple(w.strip() for w in args.windows.split(",") if w.strip())
    url, meta = sqlite_store(args.data, events, args.seed, rebuild=False)
    with tempfile.TemporaryDirectory(prefix="obshub-bench-alerts-") as d:
        copy = Path(d) / "copy.db"
        shutil.copyfile(url.removeprefix("sqlite:///"), copy)
        table("SQLite", events, windows, list(measure(f"sqlite:///{copy}", meta.now_us, sizes, args.passes, windows)))
    if args.opensearch:
        with ExitStack() as stack:
            base = stack.enter_context(opensearch_base(args.opensearch))
            os_url = _with_prefix(base, f"bench-alerts-{int(time.time())}")
            os_meta = build(os_url, events, args.seed)
            table("OpenSearch", events, windows, list(measure(os_url, os_meta.now_us, sizes, args.passes, windows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

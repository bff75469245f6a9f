"""Ingest throughput on OpenSearch: the hub end to end (HTTP, NDJSON, validation, bulk) vs the
same documents bulk-loaded straight into the same index template with opensearch-py, with the
same batch size and concurrency, side by side in one run. The ratio is the figure.

    .venv/bin/python bench/ingest_opensearch.py [--events 100000] [--batch 1000] [--senders 2]
        [--rounds 3] [--opensearch opensearch://127.0.0.1:9250?replicas=0]   # default: start a node
        [--workers 1,2,4]   # one hub row per `obshub serve --workers N` (default 1)

The machine is shared and noisy (other test runs come and go), so the two paths alternate for
`--rounds` rounds, and the table shows each path's median and the median of per-round ratios.

Two references for the hub: opensearch-py bulk of pre-serialized NDJSON bytes (the strict one:
no per-document work at all in the timed window; "vs direct" is against it), and
`helpers.parallel_bulk` over the document dicts, the idiomatic opensearch-py loader, which
serializes them itself (printed as "hub vs helpers.parallel_bulk").

Without --opensearch (or OBSHUB_TEST_OPENSEARCH_URL) a node is started with
scripts/opensearch.sh on free ports in a temp dir, and stopped at the end. Both runs write to a
fresh prefix each, so neither benefits from the other's warm index.

By default everything shares the machine's cores, so every CPU cycle the hub spends is taken
from the node's indexing: the ratio then measures the hub's CPU cost per event against the
node's. `--split-cores N` pins the node (a local one) to the first N cores and the hub and the
senders to the rest, as in production where the hub runs beside, not on, the cluster's
machines; the ratio then measures whether the hub keeps the node busy.

Reading it against the target (hub >= 0.8 of direct bulk): `--split-cores 1 --senders 4` is the
production shape on a 2-core box (the hub off the cluster's cores, a fleet's agents sending at
once); the default, shared cores and 2 closed-loop senders, is the worst case, kept to track
the hub's CPU per event. docs/performance.md has both, measured.

A second table gives the CPU time per event of each process in the timed windows (the node when
it runs on this machine, the hub, this bench: its senders, or for the store row the store layer
itself), and how many cores they kept busy. CPU per event is far steadier than events/s here.
`--workers 1,2,4` adds a hub row per number of worker processes (`obshub serve --workers N`),
measured in the same alternating rounds; the hub's CPU is its supervisor's and workers' together.
"If CPU-bound" is the ratio the measured one tends to when the cores are saturated: events/s
the cores could carry at these CPU costs (on shared cores, all processes' CPU over all cores;
with --split-cores, the busier of the node's cores and the others), this path over direct. A
measured ratio below it means idle cores, i.e. closed-loop senders waiting on a round trip.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from opensearchpy import helpers  # noqa: E402

import _hub  # noqa: E402
from _hub import CPU_CLOCKS, fan_out, process_cpu_s, window  # noqa: E402
from ingest import bench_hub, make_events  # noqa: E402
from obshub.events import normalize  # noqa: E402
from obshub.store.opensearch import OpenSearchStore  # noqa: E402
from obshub.store.opensearch.mappings import doc_id, to_doc  # noqa: E402
from tests.opensearch_node import OpenSearchNode, drop_prefix  # noqa: E402


def with_prefix(base: str, tag: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}prefix={tag}{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def split_cores(base_url: str, node_cores: int) -> Iterator[str]:
    """Pin every thread of the (local) node to the first `node_cores` CPUs, and this thread,
    hence the senders and the hub process it starts later, to the others; undone at the end.
    Threads the JVM creates later inherit their creator's CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if not 0 < node_cores < len(cpus):
        raise SystemExit(f"--split-cores {node_cores}: need 1..{len(cpus) - 1} of this machine's {len(cpus)} CPUs")
    pid = local_node_pid(base_url)
    if pid is None:
        raise SystemExit("--split-cores: the node does not run on this machine")

    def pin(cores: set[int]) -> None:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(int(tid), cores)

    node_set, hub_set = set(cpus[:node_cores]), set(cpus[node_cores:])
    pin(node_set)
    os.sched_setaffinity(0, hub_set)
    try:
        yield f"node pid {pid} on CPUs {sorted(node_set)}, hub and senders on {sorted(hub_set)}"
    finally:
        pin(set(cpus))
        os.sched_setaffinity(0, set(cpus))


def local_node_pid(base_url: str) -> int | None:
    """The node's pid when it runs on this machine (the same process is in /proc), else None."""
    store = OpenSearchStore.from_url(base_url)
    store.open()
    try:
        nodes = store.client.nodes.info(node_id="_local", metric="process")["nodes"]
        pid = int(next(iter(nodes.values()))["process"]["id"])
    finally:
        store.close()
    try:  # a pid on another machine may exist here too: it must be this node's JVM
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return pid if b"org.opensearch.bootstrap.OpenSearch" in f.read() else None
    except OSError:
        return None


def warm_up(base_url: str, batch: int, senders: int) -> None:
    """Warm the JVM (JIT, caches) so the first measured path is not penalized: a fresh node
    needs ~100k documents before its indexing speed settles (after 20k, round 1 ran at a third
    of the later speed)."""
    bench_direct(make_events(100_000, seed=2), batch, senders, base_url)


@contextlib.contextmanager
def fresh_store(base_url: str, tag: str) -> Iterator[OpenSearchStore]:
    """An open store on a new prefix (the same template as the hub's), dropped afterwards."""
    url = with_prefix(base_url, tag)
    store = OpenSearchStore.from_url(url)
    store.open()
    try:
        yield store
    finally:
        store.close()
        drop_prefix(url)


def documents(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(_id, document) of each event as the store writes it, for project 1."""
    now = time.time_ns() // 1000
    return [(doc_id(1, ev["id"]), to_doc(1, ev)) for ev in (normalize(e, now) for e in events)]


def bench_direct(events: list[dict[str, Any]], batch: int, senders: int, base_url: str) -> float:
    """opensearch-py bulk of the documents the store would write: pre-serialized NDJSON bytes,
    `create` ops with the same _ids, into a stream made by the same template."""
    with fresh_store(base_url, "bd") as store:
        index = store.names.events
        docs = documents(events)
        bodies = []
        for i in range(0, len(docs), batch):
            lines = []
            for _id, doc in docs[i : i + batch]:
                lines.append(orjson.dumps({"create": {"_index": index, "_id": _id}}))
                lines.append(orjson.dumps(doc))
            bodies.append(b"\n".join(lines) + b"\n")
        client = store.client
        stored = [0] * senders

        def send(k: int, mine: Sequence[bytes]) -> None:
            for body in mine:
                r = client.bulk(body=body, params={"filter_path": "errors,items.*.status"})
                assert not r["errors"], "direct bulk had item errors"
                stored[k] += len(r["items"])

        elapsed = fan_out(bodies, senders, send)
        assert sum(stored) == len(events)
        return elapsed


def bench_helpers(events: list[dict[str, Any]], batch: int, senders: int, base_url: str) -> float:
    """The idiomatic opensearch-py loader: `helpers.parallel_bulk` over the document dicts (it
    serializes them itself), `senders` threads, chunks of `batch`. A second reference for the
    hub, beside the stricter pre-serialized bytes of bench_direct."""
    with fresh_store(base_url, "bp") as store:
        index = store.names.events
        actions = [
            {"_op_type": "create", "_index": index, "_id": _id, "_source": doc} for _id, doc in documents(events)
        ]
        with window() as w:
            stored = sum(
                ok
                for ok, _ in helpers.parallel_bulk(
                    store.client, actions, thread_count=senders, chunk_size=batch, queue_size=senders
                )
            )
        assert stored == len(events)
        return w.seconds


def bench_store(events: list[dict[str, Any]], batch: int, senders: int, base_url: str) -> float:
    """OpenSearchStore.write_events in-process on pre-normalized events: the store layer alone
    (serialization, sub-bulks, per-item outcomes), without HTTP, parsing or digest."""
    with fresh_store(base_url, "bs") as store:
        now = time.time_ns() // 1000
        evs = [normalize(e, now) for e in events]
        batches = [evs[i : i + batch] for i in range(0, len(evs), batch)]
        stored = [0] * senders

        def send(k: int, mine: Sequence[list[dict[str, Any]]]) -> None:
            for b in mine:
                stored[k] += store.write_events(1, b).accepted

        elapsed = fan_out(batches, senders, send)
        assert sum(stored) == len(events)
        return elapsed


def run_rounds(
    events: list[dict[str, Any]], args: argparse.Namespace, base: str
) -> tuple[dict[str, list[float]], dict[str, list[dict[str, float]]]]:
    """Warm up, then `args.rounds` rounds of direct, helpers, store and the hub (once per
    `--workers` count: keys hub1, hub2, ...), alternating. Returns each path's seconds and CPU
    seconds by process, one entry per round."""
    warm_up(base, args.batch, args.senders)
    hubs = [f"hub{n}" for n in args.workers]
    times: dict[str, list[float]] = {k: [] for k in ("direct", "helpers", "store", *hubs)}
    cpu: dict[str, list[dict[str, float]]] = {k: [] for k in times}
    for r in range(args.rounds):
        times["direct"].append(bench_direct(events, args.batch, args.senders, base))
        cpu["direct"].append(_hub.LAST.cpu)
        times["helpers"].append(bench_helpers(events, args.batch, args.senders, base))
        cpu["helpers"].append(_hub.LAST.cpu)
        times["store"].append(bench_store(events, args.batch, args.senders, base))
        cpu["store"].append(_hub.LAST.cpu)
        for n, key in zip(args.workers, hubs, strict=True):
            hub_url = with_prefix(base, "bh")
            try:
                times[key].append(bench_hub(events, args.batch, args.senders, args.encoding, hub_url, n))
                cpu[key].append(_hub.LAST.cpu)
            finally:
                drop_prefix(hub_url)
        print(
            f"round {r + 1}: "
            + ", ".join(f"{k} {args.events / v[-1]:,.0f}/s" for k, v in times.items())
            + ", hub ratios "
            + " ".join(f"{times['direct'][-1] / times[k][-1]:.2f}" for k in hubs),
            file=sys.stderr,
        )
    return times, cpu


def capacity(per_event: dict[str, float], groups: list[tuple[int, tuple[str, ...]]]) -> float:
    """Events/s the cores could carry at these CPU costs: each group of processes shares its
    cores, and the busiest group sets the pace."""
    return min(cores * 1e6 / max(1e-9, sum(per_event.get(p, 0.0) for p in procs)) for cores, procs in groups)


def print_cpu(
    times: dict[str, list[float]], cpu: dict[str, list[dict[str, float]]], labels: dict[str, str], n: int, split: int
) -> None:
    """The CPU table: µs per event by process, cores kept busy, and the ratio if CPU-bound."""
    procs = [p for p in ("node", "hub", "bench") if any(p in c for cs in cpu.values() for c in cs)]
    per_event = {k: [{p: c.get(p, 0.0) * 1e6 / n for p in procs} for c in cs] for k, cs in cpu.items()}
    ncpu = len(os.sched_getaffinity(0))
    groups: list[tuple[int, tuple[str, ...]]] = (
        [(split, ("node",)), (ncpu - split, ("hub", "bench"))] if split else [(ncpu, ("node", "hub", "bench"))]
    )
    heads = [f"{p} µs/ev" for p in procs] + ["all µs/ev", "cores busy", "if CPU-bound"]
    print()
    print(f"| {'path':<44} | " + " | ".join(f"{h:>12}" for h in heads) + " |")
    print(f"|{'-' * 46}|" + "|".join("-" * 14 for _ in heads) + "|")
    for key, label in labels.items():
        rounds = per_event[key]
        cols = [statistics.median(r[p] for r in rounds) for p in procs]
        total = statistics.median(sum(r.values()) for r in rounds)
        busy = statistics.median(sum(c.values()) / t for c, t in zip(cpu[key], times[key], strict=True))
        bound = statistics.median(
            capacity(r, groups) / capacity(d, groups) for d, r in zip(per_event["direct"], rounds, strict=True)
        )
        print(
            f"| {label:<44} | "
            + " | ".join(f"{v:>12.1f}" for v in cols)
            + f" | {total:>12.1f} | {busy:>12.2f} | {bound:>12.2f} |"
        )
    where = " + ".join(f"{'+'.join(ps)} on {c} core(s)" for c, ps in groups)
    print(
        f"(CPU per event in the timed windows, medians; if CPU-bound = events/s the cores could carry at "
        f"these costs, {where}, vs direct's)"
    )
    if "node" not in procs:
        print("(the node runs on another machine: its CPU is not counted)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--encoding", choices=("identity", "zstd"), default="zstd")
    ap.add_argument("--opensearch", default=os.environ.get("OBSHUB_TEST_OPENSEARCH_URL"))
    ap.add_argument(
        "--workers",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1],
        metavar="N[,N...]",
        help="a hub row per number of worker processes (obshub serve --workers N); default 1",
    )
    ap.add_argument(
        "--split-cores",
        type=int,
        default=0,
        metavar="N",
        help="pin the node to N cores and the hub and senders to the others (default: shared)",
    )
    args = ap.parse_args()
    events = make_events(args.events)
    node = None
    tmp = tempfile.TemporaryDirectory()
    base = args.opensearch
    if not base:
        t = time.perf_counter()
        node = OpenSearchNode(Path(tmp.name) / "node").start()
        base = node.store_url
        print(f"node started in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    print(
        f"{args.events} events, batches of {args.batch}, {args.senders} senders, {args.encoding} bodies, "
        f"{os.cpu_count()} cores, {base}",
        file=sys.stderr,
    )
    try:
        with contextlib.ExitStack() as stack:
            if args.split_cores:
                print(stack.enter_context(split_cores(base, args.split_cores)), file=sys.stderr)
            pid = local_node_pid(base)
            if pid is not None:
                CPU_CLOCKS["node"] = lambda: process_cpu_s(pid)
            times, cpu = run_rounds(events, args, base)
    finally:
        if node is not None:
            node.stop()
        tmp.cleanup()
    n = args.events
    labels = {
        "direct": "opensearch-py bulk, pre-serialized bytes",
        "helpers": "opensearch-py helpers.parallel_bulk, dicts",
        "store": "store.write_events, pre-normalized, no HTTP",
        **{
            f"hub{w}": "hub: HTTP -> validate -> opensearch store" if w == 1 else f"hub, serve --workers {w}"
            for w in args.workers
        },
    }
    print()
    print(f"| {'path':<44} | {'events':>8} | {'seconds':>7} | {'events/s':>9} | {'vs direct':>9} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 9}|{'-' * 11}|{'-' * 11}|")
    for key, label in labels.items():
        median = statistics.median(times[key])
        ratio = statistics.median(d / t for d, t in zip(times["direct"], times[key], strict=True))  # per-round ratios
        print(f"| {label:<44} | {n:>8} | {median:>7.2f} | {n / median:>9,.0f} | {ratio:>9.2f} |")
    first = f"hub{args.workers[0]}"
    vs_helpers = statistics.median(p / h for p, h in zip(times["helpers"], times[first], strict=True))
    where = (
        f"node on {args.split_cores} core(s), hub and senders on the rest"
        if args.split_cores
        else "all on shared cores"
    )
    print(
        f"(medians of {args.rounds} alternating rounds; ratio = median of per-round ratios; {where};"
        f" {labels[first].split(':')[0]}{'' if args.workers[0] == 1 else f' ({args.workers[0]} workers)'}"
        f" vs helpers.parallel_bulk {vs_helpers:.2f})"
    )
    print_cpu(times, cpu, labels, n, args.split_cores)


if __name__ == "__main__":
    main()

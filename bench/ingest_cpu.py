"""CPU per event of each stage of the NDJSON -> OpenSearch path, in-process, no node needed: the
pure per-line work the hub does between the socket and the bulk request, stage by stage.

    .venv/bin/python bench/ingest_cpu.py [--events 50000] [--batch 1000] [--passes 7]

Each body goes through the stages as a request does (zstd decode, `parse_ndjson` with
`normalize`, digest, the bulk lines the writer sends), one batch at a time so memory is reused
as in the hub (a list of 50k fresh results made orjson.dumps look 5x slower: page faults), with
the hub's GC settings. Each stage's CPU time is summed over the batches; the table shows the
fastest pass, in µs per event.

What this leaves out, and bench/ingest_opensearch.py's hub CPU includes: HTTP (uvicorn,
starlette, the pipeline's awaits, ~1.6 µs per event in 1,000-event requests), the thread hops
and futures, the coalescer, and sending the bulk and reading its answer (opensearch-py,
urllib3, the socket). docs/performance.md has both, measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest import make_events  # noqa: E402
from obshub.cli.serve import _tune_gc  # noqa: E402
from obshub.digest import Scrubber, digest  # noqa: E402
from obshub.events import now_us  # noqa: E402
from obshub.ingest.body import decode  # noqa: E402
from obshub.ingest.native import parse_ndjson  # noqa: E402
from obshub.settings import Settings  # noqa: E402
from obshub.store.opensearch import writer  # noqa: E402

STAGES = ("zstd decode", "split + orjson.loads (reference)", "parse_ndjson (loads + normalize)", "digest", "bulk lines")


def bulk_lines_of(head: bytes) -> Callable[[int, list[Any]], list[bytes]]:
    """The writer's serialization of a batch (its action line and document per event)."""
    line = getattr(writer, "bulk_line", None)
    if line is not None:  # this code's writer: one function per event
        return lambda pid, evs: [line(head, pid, ev) for ev in evs]
    from obshub.store.opensearch.mappings import doc_id, to_doc  # the code before it

    dumps = orjson.dumps
    return lambda pid, evs: [
        b"".join((head, dumps(doc_id(pid, ev["id"])), b"}}\n", dumps(to_doc(pid, ev)), b"\n")) for ev in evs
    ]


def one_pass(bodies: list[bytes], settings: Settings, scrubber: Scrubber) -> dict[str, float]:
    clock = time.process_time
    spent = dict.fromkeys(STAGES, 0.0)
    lines_of = bulk_lines_of(b'{"create":{"_index":"obshub-events","_id":')
    for raw in bodies:
        t0 = clock()
        body = decode(raw, "zstd", settings.max_body_bytes, ("identity", "gzip", "zstd"))
        t1 = clock()
        ref = [orjson.loads(line) for line in body.split(b"\n")]
        t2 = clock()
        parsed = parse_ndjson(body, now_us(), settings)
        t3 = clock()
        digest(parsed.events, scrubber)
        t4 = clock()
        lines = lines_of(1, parsed.events)
        t5 = clock()
        assert len(lines) == len(ref)
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            spent[stage] += dt
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--passes", type=int, default=7)
    args = ap.parse_args()
    events = make_events(args.events)
    cctx = zstandard.ZstdCompressor(level=1)
    bodies = [
        cctx.compress(b"\n".join(orjson.dumps(e) for e in events[i : i + args.batch]))
        for i in range(0, len(events), args.batch)
    ]
    settings, scrubber = Settings(), Scrubber()
    _tune_gc()  # the hub's own collector settings: with CPython's default every stage costs ~10% more
    passes = [one_pass(bodies, settings, scrubber) for _ in range(args.passes)]
    n = args.events
    print(f"| {'stage':<34} | {'µs/event':>8} |")
    print(f"|{'-' * 36}|{'-' * 10}|")
    total = 0.0
    for stage in STAGES:
        us = min(p[stage] for p in passes) * 1e6 / n
        if "reference" not in stage:
            total += us
        print(f"| {stage:<34} | {us:>8.2f} |")
    print(f"| {'sum (without the reference)':<34} | {total:>8.2f} |")
    print(f"(fastest of {args.passes} passes over {n} events in batches of {args.batch})")


if __name__ == "__main__":
    main()

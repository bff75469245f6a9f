"""Cost of one log call: obshub_sdk vs plain structlog JSON vs stdlib logging with a JSON formatter.

Every variant runs in the same process, round-robin, and the best of ``--repeat`` rounds is
reported as ns per call. Two sinks, two tables: ``file`` writes real lines to a file on disk (one
write syscall per line, as in production, so the syscall is part of every number) and ``null``
writes to a stream that drops the bytes (the CPU cost of building the line alone). Ratios are
against the plain structlog baseline: ``add_log_level`` + ``TimeStamper(fmt="iso", utc=True)`` +
``JSONRenderer()`` on a ``WriteLogger``, the smallest pipeline that produces a comparable line.
Target (issue 5): obshub_sdk ≤ 1.3x that baseline.

Each call is ``log.info("order placed", order_id=1234, amount=19.99, currency="EUR")``; the
"request" variants have request_id/trace_id/span_id/user_id bound, as inside a web request.

    .venv/bin/python bench/sdk.py [--n 20000] [--repeat 5] [--sink file|null|both]
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

import obshub_sdk
from obshub_sdk import _render

IDS = {
    "request_id": "4a1f0c9e2b7d4e8f9a0b1c2d3e4f5a6b",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "user_id": "user-18842",
}


class StdlibJSONFormatter(logging.Formatter):
    """What a team writes by hand when it wants JSON from stdlib logging."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key in ("order_id", "amount", "currency", *IDS):
            if hasattr(record, key):
                line[key] = getattr(record, key)
        return json.dumps(line)


class NullStream:
    """Accepts text or bytes and drops it: measures line building without the syscall."""

    mode = "wb"

    def write(self, data: object) -> None:
        pass

    def flush(self) -> None:
        pass


def _open(path: str | None) -> object:
    return NullStream() if path is None else open(path, "w")  # open for the whole run


def _plain_structlog(path: str | None, merge: bool) -> Callable[[], None]:
    stream = _open(path)
    procs: list = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.JSONRenderer(),
    ]
    if merge:
        procs.insert(0, structlog.contextvars.merge_contextvars)
    log = structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=procs,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        context_class=dict,
    )
    return lambda: log.info("order placed", order_id=1234, amount=19.99, currency="EUR")


def _stdlib_json(path: str | None) -> Callable[[], None]:
    log = logging.getLogger("bench.stdlib")
    log.propagate = False
    for old in list(log.handlers):
        log.removeHandler(old)
    handler = logging.StreamHandler(_open(path))  # type: ignore[arg-type]
    handler.setFormatter(StdlibJSONFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    extra = {"order_id": 1234, "amount": 19.99, "currency": "EUR"}
    return lambda: log.info("order placed", extra=extra)


def _sdk_structlog() -> Callable[[], None]:
    log = structlog.get_logger("bench.sdk")
    return lambda: log.info("order placed", order_id=1234, amount=19.99, currency="EUR")


def _sdk_stdlib() -> Callable[[], None]:
    log = logging.getLogger("bench.sdk_stdlib")
    extra = {"order_id": 1234, "amount": 19.99, "currency": "EUR"}
    return lambda: log.info("order placed", extra=extra)


def _time(call: Callable[[], None], n: int, ctx: contextvars.Context) -> float:
    def loop() -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            call()
        return time.perf_counter_ns() - start

    return ctx.run(loop) / n


def run(sink: str, n: int, repeat: int) -> None:
    tmp = tempfile.mkdtemp(prefix="obshub-bench-") if sink == "file" else None

    def path(name: str) -> str | None:
        return os.path.join(tmp, name) if tmp else None

    obshub_sdk.configure(service="bench", path=path("sdk.jsonl") or NullStream(), host="bench-1")

    empty = contextvars.copy_context()
    request = contextvars.copy_context()
    request.run(obshub_sdk.bind, **IDS)
    request.run(structlog.contextvars.bind_contextvars, **IDS)

    orjson_dumps = _render._fast

    def stdlib_json_serializer(call: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            _render._fast = _render._dumps_stdlib
            call()
            _render._fast = orjson_dumps

        return run

    sdk = _sdk_structlog()
    variants: list[tuple[str, Callable[[], None], contextvars.Context]] = [
        ("structlog JSONRenderer (baseline)", _plain_structlog(path("a"), False), empty),
        ("structlog + merge_contextvars, 4 ids bound", _plain_structlog(path("b"), True), request),
        ("obshub_sdk via structlog, no ids bound", sdk, empty),
        ("obshub_sdk via structlog, 4 ids bound", sdk, request),
        ("stdlib logging + hand-written JSON formatter", _stdlib_json(path("c")), empty),
        ("obshub_sdk via stdlib logging, 4 ids bound", _sdk_stdlib(), request),
    ]
    if orjson_dumps is not _render._dumps_stdlib:
        variants.append(
            ("obshub_sdk via structlog, 4 ids, stdlib json (no orjson)", stdlib_json_serializer(sdk), request)
        )

    for _, call, ctx in variants:  # warm-up: caches, first-use logger assembly
        _time(call, 2_000, ctx)
    best = {name: float("inf") for name, _, _ in variants}
    for _ in range(repeat):
        for name, call, ctx in variants:
            best[name] = min(best[name], _time(call, n, ctx))

    base = best[variants[0][0]]
    width = max(len(name) for name in best)
    print(
        f"\nsink={sink}: python {sys.version.split()[0]}, structlog {structlog.__version__}, "
        f"orjson {'yes' if orjson_dumps is not _render._dumps_stdlib else 'no'}, "
        f"{n} calls x {repeat} rounds, best round"
    )
    print(f"{'variant':<{width}}  {'ns/call':>8}  {'vs baseline':>11}")
    for name, ns in best.items():
        print(f"{name:<{width}}  {ns:>8.0f}  {ns / base:>10.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best one counts")
    parser.add_argument("--sink", choices=["file", "null", "both"], default="both")
    args = parser.parse_args()
    for sink in ["null", "file"] if args.sink == "both" else [args.sink]:
        run(sink, args.n, args.repeat)


if __name__ == "__main__":
    main()

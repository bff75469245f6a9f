"""Multiline: Python tracebacks and Java stack traces become one event; limits and timeout hold."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from obshub_agent.config import InputConfig, MultilineConfig
from obshub_agent.parse import FileEncoder, TimestampParser
from obshub_agent.parse.encode import loads
from tests.data import LOGHUB

JAVA_TRACE = """2015-07-29 19:52:21,133 - WARN  [RecvWorker:188978561024:QuorumCnxManager$RecvWorker@765] - Interrupting SendWorker
java.net.SocketException: Connection reset
\tat java.net.SocketInputStream.read(SocketInputStream.java:196)
\tat java.io.DataInputStream.readInt(DataInputStream.java:387)
\tat org.apache.zookeeper.server.quorum.QuorumCnxManager$RecvWorker.run(QuorumCnxManager.java:747)
Caused by: java.io.EOFException
\t... 3 more
"""  # noqa: E501 - a ZooKeeper log line, verbatim (Loghub)


def _encode(inp: InputConfig, data: bytes, clock: list[float] | None = None) -> tuple[FileEncoder, list[dict]]:
    now = clock or [1_700_000_000.0]
    enc = FileEncoder(
        inp, host="h", uid="u", path="/x.log", ts=TimestampParser(inp.ts_format, "UTC"), clock=lambda: now[0]
    )
    out: list[bytes] = []
    enc.feed(data, 0, out)
    return enc, [loads(x) for x in out]


def _python_log(tmp_path: Path, fmt: str) -> bytes:
    """A real log file written by the logging module, with two real tracebacks."""
    path = tmp_path / "app.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(fmt))
    log = logging.getLogger(f"shop.api.{abs(hash(fmt))}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.info("starting on port %d", 8000)
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed")
        log.warning("slow request: %d ms", 1500)
        try:
            try:
                _ = 1 / 0
            except ZeroDivisionError as exc:
                raise ValueError("bad total") from exc
        except ValueError:
            log.error("checkout failed", exc_info=True)
        log.debug("done")
    finally:
        log.removeHandler(handler)
        handler.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "fmt",
    [
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
        "%(levelname)s:%(name)s:%(message)s",
    ],
)
def test_python_tracebacks_become_one_event(tmp_path: Path, fmt: str) -> None:
    data = _python_log(tmp_path, fmt)
    inp = InputConfig(paths=("/x.log",), format="python")  # automatic multiline for this preset
    enc, events = _encode(inp, data)
    enc.flush(out := [])
    events += [loads(x) for x in out]
    assert [e["level"] for e in events] == ["info", "error", "warning", "error", "debug"]
    assert all(e["logger"].startswith("shop.api.") for e in events)
    assert events[1]["message"].startswith("lookup failed\nTraceback (most recent call last):")
    assert events[1]["error"]["type"] == "KeyError" and events[1]["error"]["value"] == "'missing'"
    assert events[3]["error"]["type"] == "ValueError" and events[3]["error"]["value"] == "bad total"
    assert "ZeroDivisionError: division by zero" in events[3]["message"]
    assert "The above exception was the direct cause" in events[3]["message"]
    assert "error" not in events[0] and "error" not in events[2]
    if "asctime" in fmt:
        assert all(e["ts"].startswith("20") for e in events)
    # the group's offset and id are those of its first line
    first_lines = [i for i, line in enumerate(data.split(b"\n")) if not line.startswith((b" ", b"Traceback"))]
    assert events[1]["attrs"]["offset"] == len(b"\n".join(data.split(b"\n")[:1])) + 1
    assert len(first_lines) > 5


def test_java_stack_trace_in_real_zookeeper_log() -> None:
    lines = (LOGHUB / "Zookeeper" / "Zookeeper_2k.log").read_bytes().split(b"\n")[:300]
    data = b"\n".join(lines[:150]) + b"\n" + JAVA_TRACE.encode() + b"\n".join(lines[150:]) + b"\n"
    inp = InputConfig(paths=("/x.log",), format="log4j", multiline=MultilineConfig(start=r"^\d{4}-\d{2}-\d{2} "))
    enc, events = _encode(inp, data)
    out: list[bytes] = []
    enc.flush(out)
    events += [loads(x) for x in out]
    assert len(events) == 301
    trace = events[150]
    assert trace["level"] == "warn"
    assert trace["message"].startswith("Interrupting SendWorker\njava.net.SocketException: Connection reset\n\tat ")
    assert trace["message"].endswith("\t... 3 more")
    assert trace["attrs"]["lines"] == 7


def test_max_lines_and_timeout() -> None:
    inp = InputConfig(
        paths=("/x.log",), format="text", multiline=MultilineConfig(start=r"^START", max_lines=3, timeout_ms=1000)
    )
    clock = [100.0]
    data = b"START a\n  1\n  2\n  3\n  4\nSTART b\n  x\n"
    enc, events = _encode(inp, data, clock)
    # the first group is cut at 3 lines; its remainder is its own event; "START b" is still pending
    assert [e["message"] for e in events] == ["START a\n  1\n  2", "  3\n  4"]
    assert enc.pending_offset == data.index(b"START b")
    out: list[bytes] = []
    clock[0] = 100.5
    enc.poll(clock[0], out)
    assert out == []
    clock[0] = 101.1
    enc.poll(clock[0], out)
    assert [loads(x)["message"] for x in out] == ["START b\n  x"]
    assert enc.pending_offset is None


def test_multiline_disabled_for_preset() -> None:
    inp = InputConfig(paths=("/x.log",), format="python", multiline=False)  # type: ignore[arg-type]
    _, events = _encode(inp, b"ERROR:a:boom\nTraceback (most recent call last):\nINFO:a:ok\n")
    assert [e["message"] for e in events] == ["boom", "Traceback (most recent call last):", "ok"]
    assert events[1]["attrs"]["parse_error"] is True

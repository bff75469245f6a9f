"""Shared by the benchmarks: a hub as its own process, a light sender, and CPU accounting.

The sender uses `http.client` keep-alive connections in threads: on 2 cores an httpx client
in the same machine capped the whole measurement at ~700 requests/s, i.e. it measured itself.

CPU accounting: every timed window (`fan_out`, `window`) also records the CPU seconds each
process in `CPU_CLOCKS` spent in it (this bench process always; the hub while `hub_process`
runs it; others a bench adds, e.g. the OpenSearch node). On a shared, noisy box events/s swing
by a third from run to run, while CPU time per event is steady to a few percent, and it says
who the cycles went to.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hubproc import free_port

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a local process so far (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()  # after "pid (comm)": the name may hold spaces
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime: fields 14 and 15 of stat(5)


# name -> CPU seconds so far: the processes whose CPU each timed window records.
CPU_CLOCKS: dict[str, Callable[[], float]] = {"bench": time.process_time}
# port -> pid of each hub `hub_process` runs (for memory readings: `peak_rss_mb`).
HUB_PIDS: dict[int, int] = {}


def reset_peak_rss(pid: int) -> None:
    """Start a new VmHWM window: writing 5 to clear_refs resets the peak to the current RSS (Linux 4.0+)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) since it started or the last reset, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


@dataclass
class Window:
    """One timed window: wall seconds and each clock's CPU seconds within it."""

    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


LAST = Window()  # the most recent window, for callers whose timed function returns only seconds


@contextlib.contextmanager
def window() -> Iterator[Window]:
    """Time the block: wall clock and every CPU clock; also kept as `LAST`."""
    global LAST
    w = Window()
    clocks = dict(CPU_CLOCKS)
    before = {k: c() for k, c in clocks.items()}
    t = time.perf_counter()
    try:
        yield w
    finally:
        w.seconds = time.perf_counter() - t
        w.cpu = {k: c() - before[k] for k, c in clocks.items()}
        LAST = w


def children(pid: int) -> list[int]:
    """Pids of a local process's children (from /proc: each process's parent pid)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat", "rb") as f:
                if int(f.read().rsplit(b")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children: `serve --workers N`'s supervisor and workers."""
    total = process_cpu_s(pid)
    for child in children(pid):
        with contextlib.suppress(OSError):  # one that just ended
            total += process_cpu_s(child)
    return total


@contextlib.contextmanager
def hub_process(store_url: str, workers: int = 1, **env: str) -> Iterator[int]:
    """`obshub serve` on a free port (`--workers N`: until every worker started); yields the
    port; stops it afterwards. While it runs its CPU time, summed over the supervisor and its
    workers, is in `CPU_CLOCKS` as "hub"."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        cmd = [sys.executable, "-m", "obshub", "serve", "--port", str(port), "--store", store_url]
        proc = subprocess.Popen(
            [*cmd, "--workers", str(workers)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, **env},
        )
        CPU_CLOCKS["hub"] = lambda: tree_cpu_s(proc.pid)
        HUB_PIDS[port] = proc.pid
        try:
            for _ in range(1200):
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the hub exited with {proc.returncode}: {log.read()[-2000:]!r}")
                log.seek(0)
                if workers == 1 or f"{workers} workers (pids".encode() in log.read():
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                            break
                time.sleep(0.05)
            yield port
        finally:
            CPU_CLOCKS.pop("hub", None)
            HUB_PIDS.pop(port, None)
            proc.terminate()
            proc.wait(60)


T = TypeVar("T")


def fan_out(items: Sequence[T], senders: int, work: Callable[[int, Sequence[T]], Any]) -> float:
    """Run `work(k, items[k::senders])` in `senders` threads at once; returns elapsed seconds
    (the whole window, with CPU times, is in `LAST`)."""
    threads = [threading.Thread(target=work, args=(k, items[k::senders])) for k in range(senders)]
    with window() as w:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    return w.seconds


def post_all(port: int, path: str, headers: dict[str, str], bodies: Sequence[bytes], senders: int) -> float:
    """POST every body (split across `senders` threads), retrying 429/503 after Retry-After.
    Returns the elapsed seconds; raises on any other status."""
    errors: list[str] = []

    def send(k: int, mine: Sequence[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for body in mine:
                while True:
                    conn.request("POST", path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.status == 200:
                        break
                    if resp.status not in (429, 503):
                        errors.append(f"{resp.status}: {data[:200]!r}")
                        return
                    time.sleep(float(resp.getheader("retry-after") or "0.1"))
        finally:
            conn.close()

    elapsed = fan_out(bodies, senders, send)
    if errors:
        raise RuntimeError(errors[0])
    return elapsed

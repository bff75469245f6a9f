"""Shared by the benchmarks: a hub as its own process, and a light sender.

The sender uses `http.client` keep-alive connections in threads: on 2 cores an httpx client
in the same machine capped the whole measurement at ~700 requests/s, i.e. it measured itself.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hubproc import free_port  # noqa: E402


@contextlib.contextmanager
def hub_process(store_url: str, **env: str) -> Iterator[int]:
    """`obshub serve` on a free port; yields the port; stops it afterwards."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "obshub", "serve", "--port", str(port), "--store", store_url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


T = TypeVar("T")


def fan_out(items: Sequence[T], senders: int, work: Callable[[int, Sequence[T]], Any]) -> float:
    """Run `work(k, items[k::senders])` in `senders` threads at once; returns elapsed seconds."""
    threads = [threading.Thread(target=work, args=(k, items[k::senders])) for k in range(senders)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


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

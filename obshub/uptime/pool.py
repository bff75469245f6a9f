"""The probe threads: a pool whose queue serves probes due now before catch-up probes, and
that grows with the load.

Why not a ThreadPoolExecutor: at a hub's start (or when a replica reads new definitions) every
check's current slot is due at once, though most opened long ago. With 10,000 checks that was
10,000 probes in one FIFO queue; each costs ~2 ms of CPU (httpx, the ingest pipeline, the
store), so the checks whose slot opened during the next 14 s queued behind them: p99 lateness
13 s (bench/checks.py). Here a probe is queued with its priority (`NOW` before `CATCH_UP`, then
by when its slot opened), so on-time probes start first and catch-up probes fill idle time.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["CATCH_UP", "NOW", "ProbePool"]

T = TypeVar("T")
NOW, CATCH_UP = 0, 1

_Item = tuple[int, float, int, Callable[[], object] | None, Future[object] | None]


class ProbePool:
    """`submit(fn, priority, due)` -> Future. Threads are started as needed, up to `size`
    (`grow` raises it); idle ones wait on the queue."""

    def __init__(self, size: int, name: str = "obshub-uptime") -> None:
        self.size = size
        self._name = name
        self._queue: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def grow(self, size: int) -> None:
        """Allow up to `size` threads (never fewer than now)."""
        with self._lock:
            self.size = max(self.size, size)

    def submit(self, fn: Callable[[], T], priority: int = NOW, due: float = 0.0) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the probe pool is closed")
            self._queue.put((priority, due, next(self._seq), fn, future))  # type: ignore[arg-type]
            if self._idle <= self._queue.qsize() - 1 and len(self._threads) < self.size:
                t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            _, _, _, fn, future = self._queue.get()
            with self._lock:
                self._idle -= 1
            if fn is None or future is None:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as e:  # the caller's future carries it, as an executor's would
                    future.set_exception(e)

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Cancel what has not started; threads end after their current probe."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item[4] is not None:
                item[4].cancel()
        for _ in threads:
            self._queue.put((2, 0.0, next(self._seq), None, None))  # after anything still queued

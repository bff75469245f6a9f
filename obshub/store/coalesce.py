"""Group commit for any store: concurrent writers share one durable write.

Why: a durable write has a fixed price whatever its size: an fsync for SQLite (one COMMIT), a
round trip plus a translog fsync for OpenSearch (one bulk). Sentry SDKs send one event per
request, so paying that price per request caps error ingest at a few hundred events/s. Here
callers enqueue their batch and wait; a writer thread drains every batch that is waiting,
hands them to `flush` together, and releases each caller with its own result, only once
`flush` has returned, i.e. after the shared write is durable (principle 1: 2xx means durable).
Under no concurrency it degrades to one write per batch. With `workers=2` one flush can be on
the wire while the next batches gather (worth it when a flush is a network round trip).

Sharing a write must not share a failure: when a flush of several batches raises, and the store
says the error may be one batch's fault (`isolate`; not an outage or push-back, which every
batch would meet alone too), each batch is written again on its own, so only the batch that
breaks a write fails (one project's poison event once failed 42 of 120 concurrent requests of
every project in the same commit).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

import structlog

__all__ = ["Coalescer"]

log = structlog.get_logger("obshub")

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`submit(item)` from any thread; `flush(items) -> results` (aligned) on writer threads.

    `submit` returns a `concurrent.futures.Future` at once: a worker thread blocks on
    `.result()`, the event loop awaits `asyncio.wrap_future(...)` and needs no thread hop at
    all. `flush` raising fails every item of that flush with the exception; a result that *is*
    an exception fails only its own item. `weight(item)` (e.g. rows) bounds one flush to
    `max_weight`, so one transaction or bulk stays short and its memory bounded. A future
    cancelled before its flush starts is dropped unwritten (its caller is gone); once taken
    it can no longer be cancelled, so a write is never abandoned half way. `isolate(exc)`: True
    when a failed flush of several items is retried item by item (see the module docstring)."""

    def __init__(
        self,
        name: str,
        flush: Callable[[list[T]], Sequence[R | BaseException]],
        weight: Callable[[T], int],
        max_weight: int,
        workers: int = 1,
        isolate: Callable[[Exception], bool] | None = None,
    ) -> None:
        self._flush = flush
        self._isolate = isolate
        self._weight = weight
        self._max = max_weight
        self._q: queue.Queue[tuple[T, Future[R]] | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{k}", daemon=True) for k in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, item: T) -> Future[R]:
        fut: Future[R] = Future()
        self._q.put((item, fut))
        return fut

    def close(self) -> None:
        """Finish what is queued, then stop the writer threads."""
        for _ in self._threads:
            self._q.put(None)
        for t in self._threads:
            t.join(timeout=30)

    def _take(self) -> list[tuple[T, Future[R]]] | None:
        jobs: list[tuple[T, Future[R]]] = []
        n = 0
        while n < self._max:
            try:
                job = self._q.get() if not jobs else self._q.get_nowait()
            except queue.Empty:
                break
            if job is None:
                if jobs:
                    self._q.put(None)  # finish this batch, then stop
                    break
                return None
            if job[1].set_running_or_notify_cancel():
                jobs.append(job)
                n += self._weight(job[0])
        return jobs

    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            self._write(jobs)

    def _write(self, jobs: list[tuple[T, Future[R]]]) -> None:
        try:
            results = self._flush([item for item, _ in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"flush returned {len(results)} results for {len(jobs)} items")
        except BaseException as e:
            if isinstance(e, Exception) and len(jobs) > 1 and self._isolate is not None and self._isolate(e):
                log.warning("shared write failed; writing its batches one by one", batches=len(jobs), error=str(e))
                for job in jobs:
                    self._write([job])
                return
            for _, fut in jobs:  # every waiter must be released
                fut.set_exception(e)
            return
        for (_, fut), res in zip(jobs, results, strict=True):
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)

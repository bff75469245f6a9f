"""The group-commit coalescer both stores write through: batching, per-item and whole-flush
failures, the weight bound, cancellation, and draining on close."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import CancelledError, Future

import pytest

from obshub.store.coalesce import Coalescer


class Recorder:
    """A flush that records its batches and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def hold(self, c: Coalescer[int, int]) -> Future[int]:
        """Submit item 0 and keep the writer inside its flush, so what follows queues up."""
        self.gate.clear()
        first = c.submit(0)
        assert self.entered.wait(5)
        return first

    def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


def test_waiting_items_share_one_flush_and_each_gets_its_own_result() -> None:
    rec = Recorder()
    c: Coalescer[int, int] = Coalescer("t", rec, weight=lambda i: 1, max_weight=100)
    try:
        first = rec.hold(c)
        rest = [c.submit(i) for i in range(1, 7)]
        rec.gate.set()
        assert first.result(5) == 0
        assert [f.result(5) for f in rest[1::2]] == [20, 40, 60]
        for f in rest[0::2]:  # odd items failed alone, without failing their batch mates
            with pytest.raises(ValueError, match="odd"):
                f.result(5)
        assert rec.batches == [[0], [1, 2, 3, 4, 5, 6]]
    finally:
        c.close()


def test_max_weight_bounds_a_flush() -> None:
    rec = Recorder()
    c: Coalescer[int, int] = Coalescer("t", rec, weight=lambda i: 10, max_weight=30)
    try:
        rec.hold(c)
        futures = [c.submit(2 * i) for i in range(1, 8)]
        rec.gate.set()
        for f in futures:
            f.result(5)
        assert [len(b) for b in rec.batches] == [1, 3, 3, 1]
    finally:
        c.close()


def test_a_failing_flush_fails_every_item_of_it_and_the_writer_survives() -> None:
    def flush(items: list[str]) -> list[str]:
        if "boom" in items:
            raise OSError("disk full")
        return [s.upper() for s in items]

    c: Coalescer[str, str] = Coalescer("t", flush, weight=len, max_weight=1000)
    try:
        with pytest.raises(OSError, match="disk full"):
            c.submit("boom").result(5)
        assert c.submit("after").result(5) == "AFTER"
    finally:
        c.close()


def test_a_flush_with_the_wrong_number_of_results_is_an_error_not_a_silent_ack() -> None:
    c: Coalescer[int, int] = Coalescer("t", lambda items: [], weight=lambda i: 1, max_weight=10)
    try:
        with pytest.raises(RuntimeError, match="0 results for 1 items"):
            c.submit(1).result(5)
    finally:
        c.close()


def test_cancelled_before_its_flush_is_never_written() -> None:
    rec = Recorder()
    c: Coalescer[int, int] = Coalescer("t", rec, weight=lambda i: 1, max_weight=100)
    try:
        rec.hold(c)
        gone, kept = c.submit(2), c.submit(4)
        assert gone.cancel()
        rec.gate.set()
        assert kept.result(5) == 40
        with pytest.raises(CancelledError):
            gone.result(0)
        assert 2 not in [i for b in rec.batches for i in b]
    finally:
        c.close()


def test_close_drains_what_is_queued() -> None:
    rec = Recorder()
    c: Coalescer[int, int] = Coalescer("t", rec, weight=lambda i: 1, max_weight=2)
    rec.gate.clear()
    futures = [c.submit(2 * i) for i in range(6)]
    assert rec.entered.wait(5)
    threading.Timer(0.2, rec.gate.set).start()
    c.close()
    assert [f.result(0) for f in futures] == [0, 20, 40, 60, 80, 100]


def test_the_event_loop_awaits_a_write_without_a_thread_of_its_own() -> None:
    c: Coalescer[int, int] = Coalescer("t", lambda items: [i + 1 for i in items], weight=lambda i: 1, max_weight=10)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(asyncio.wrap_future(c.submit(i)) for i in range(5))))

    try:
        assert asyncio.run(main()) == [1, 2, 3, 4, 5]
    finally:
        c.close()

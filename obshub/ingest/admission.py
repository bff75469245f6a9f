"""Admission control for both ingest protocols: the slots a request must hold (pipeline.py
takes them) and where its CPU work runs.

Two kinds of slot, both taken before the body is read, so a flood costs little:
- `max_inflight` slots for requests that may hold real memory: a body over INLINE_WIRE_BYTES
  as sent, or of unknown size (chunked). Each may hold `max_body_bytes` decoded plus its events.
- 8x as many for small requests (a declared Content-Length up to INLINE_WIRE_BYTES): one Sentry
  error, a few log lines. They hold ~1 MiB at most, and they are what a fleet of SDKs sends at
  once: more of them in flight means bigger shared commits (coalesce.py). A small body that
  inflates past INLINE_BODY_BYTES takes a full slot as well before it is decoded for real.
A request finding no free slot waits up to `admission_wait_s` (at most 16 x `max_inflight`
waiters), then gets 429 + Retry-After: a Sentry SDK drops events on 429, and a fleet's error
burst is exactly when many SDKs send at once.

A small body (as sent, and once decoded) is decoded, parsed and digested right on the event
loop: at most a few ms of work, which under the GIL would hold the loop about as long from a
worker thread anyway, and it saves the thread hop (Sentry envelopes, events/s measured
side by side: +6-19%). Anything bigger goes to the hub's ingest threads (`pipeline._prepared`).
"""

from __future__ import annotations

import asyncio

from obshub.errors import Refused

__all__ = ["INLINE_BODY_BYTES", "INLINE_WIRE_BYTES", "Admission", "Ticket"]

INLINE_WIRE_BYTES = 64 * 1024
INLINE_BODY_BYTES = 128 * 1024
SMALL_PER_SLOT = 8
WAITERS_PER_SLOT = 16


class Admission:
    """The slots of one app; made on its event loop (asyncio primitives belong to one loop)."""

    def __init__(self, max_inflight: int, wait_s: float) -> None:
        self.full = asyncio.Semaphore(max_inflight)
        self.small = asyncio.Semaphore(max_inflight * SMALL_PER_SLOT)
        self.wait_s = wait_s
        self.max_waiting = WAITERS_PER_SLOT * max_inflight
        self.waiting = 0  # event-loop thread only: no lock needed

    def slots_for(self, content_length: str | None) -> asyncio.Semaphore:
        """Small slots for a declared Content-Length up to INLINE_WIRE_BYTES, else full ones."""
        small = content_length is not None and content_length.isdigit() and int(content_length) <= INLINE_WIRE_BYTES
        return self.small if small else self.full

    async def take(self, slots: asyncio.Semaphore) -> bool:
        if not slots.locked():
            await slots.acquire()  # free: returns at once
            return True
        if self.wait_s <= 0 or self.waiting >= self.max_waiting:
            return False
        self.waiting += 1
        try:
            await asyncio.wait_for(slots.acquire(), self.wait_s)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1


class Ticket:
    """The slots one request holds."""

    def __init__(self, admission: Admission, held: asyncio.Semaphore) -> None:
        self.admission = admission
        self.held = [held]

    async def need_full_slot(self) -> None:
        """A small request whose body turned out big: take a full slot too, or Refused."""
        a = self.admission
        if a.full in self.held:
            return
        if not await a.take(a.full):
            raise Refused
        self.held.append(a.full)

    def release(self) -> None:
        for s in self.held:
            s.release()
        self.held.clear()

"""Admission control for both ingest protocols: the slots a request must hold (pipeline.py
takes them) and where its CPU work runs.

Two kinds of slot, both taken once the request is authenticated and before its body is read,
so a flood costs little and an outsider holds none:
- `max_inflight` slots for requests that may hold real memory: a body over INLINE_WIRE_BYTES
  as sent, or of unknown size (chunked). Each may hold `max_body_bytes` decoded plus its events.
- 8x as many for small requests (a declared Content-Length up to INLINE_WIRE_BYTES): one Sentry
  error, a few log lines. They hold ~1 MiB at most, and they are what a fleet of SDKs sends at
  once: more of them in flight means bigger shared commits (coalesce.py). A small body that
  inflates past INLINE_BODY_BYTES takes a full slot as well before it is decoded for real.
A request finding no free slot waits up to `admission_wait_s` (at most 16 x `max_inflight`
waiters), then gets 429 + Retry-After: a Sentry SDK drops events on 429, and a fleet's error
burst is exactly when many SDKs send at once.

One project's requests may hold at most half of each pool while their bodies are still arriving
(a share, given back as soon as the body is in: on a LAN that is at once). Slow senders with a
project's credentials (its Sentry key is public) thus block at most half the slots, for at most
the body deadline (body.py), and the other projects keep the other half. A project's further
requests wait for its share like any other wait. Pre-authentication reads of a Sentry envelope's
first line (its key in the `dsn`) hold no slot, but up to 64 KiB each: as many run at once as
there are small slots (`heads`).

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
        # Per pool, the slots one project may hold while its bodies are still arriving.
        self.share = {self.full: max(1, max_inflight // 2), self.small: max(1, max_inflight * SMALL_PER_SLOT // 2)}
        self.reading: dict[tuple[asyncio.Semaphore, int], asyncio.Semaphore] = {}
        # Requests reading an envelope's first line before they are authenticated: no slot yet,
        # but up to HEAD_BYTES of memory each.
        self.heads = asyncio.Semaphore(max_inflight * SMALL_PER_SLOT)
        self.wait_s = wait_s
        self.max_waiting = WAITERS_PER_SLOT * max_inflight
        self.waiting = 0  # event-loop thread only: no lock needed

    def slots_for(self, content_length: str | None) -> asyncio.Semaphore:
        """Small slots for a declared Content-Length up to INLINE_WIRE_BYTES, else full ones."""
        small = content_length is not None and content_length.isdigit() and int(content_length) <= INLINE_WIRE_BYTES
        return self.small if small else self.full

    async def admit(self, content_length: str | None, project: int) -> Ticket | None:
        """A slot for an authenticated request of `project` and a share of its project's, which
        it gives back once its body is read (`Ticket.read_done`); None: none within `wait_s`."""
        pool = self.slots_for(content_length)
        key = (pool, project)
        share = self.reading.get(key)
        if share is None:  # one per (pool, project): as many as the store has projects
            share = self.reading[key] = asyncio.Semaphore(self.share[pool])
        if not share.locked() and not pool.locked():  # both free: no wait, no timer
            await share.acquire()
            await pool.acquire()
            return Ticket(self, pool, share)
        if self.wait_s <= 0 or self.waiting >= self.max_waiting:
            return None
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait_s):
                await share.acquire()
                try:
                    await pool.acquire()
                except BaseException:
                    share.release()
                    raise
            return Ticket(self, pool, share)
        except TimeoutError:
            return None
        finally:
            self.waiting -= 1

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

    def __init__(self, admission: Admission, held: asyncio.Semaphore, share: asyncio.Semaphore | None = None) -> None:
        self.admission = admission
        self.held = [held]
        self.share = share

    def read_done(self) -> None:
        """The body is in: the project's share of slots for bodies in flight is free again."""
        if self.share is not None:
            self.share.release()
            self.share = None

    async def need_full_slot(self) -> None:
        """A small request whose body turned out big: take a full slot too, or Refused."""
        a = self.admission
        if a.full in self.held:
            return
        if not await a.take(a.full):
            raise Refused
        self.held.append(a.full)

    def release(self) -> None:
        self.read_done()
        for s in self.held:
            s.release()
        self.held.clear()

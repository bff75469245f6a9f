"""HTTP edges that take data in: native NDJSON (`native.py`) and the Sentry protocol
(`sentry.py`), sharing body decoding (`body.py`) and the admission control below."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response

from obshub.ingest.body import BodyError

__all__ = ["admitted", "prepared"]

T = TypeVar("T")

# A body this small (as sent, and once decoded) is decoded, parsed and digested right on the
# event loop: at most a few ms of work, which under the GIL would hold the loop about as long
# from a worker thread anyway, and it saves the thread hop (Sentry envelopes, one event each:
# +13-19% events/s measured side by side). Anything bigger goes to the ingest threads.
INLINE_WIRE_BYTES = 64 * 1024
INLINE_BODY_BYTES = 128 * 1024


async def admitted(hub: Any, protocol: str, handle: Callable[[], Awaitable[Response]],
                   refuse: Callable[[], Response]) -> Response:
    """Run `handle` in one of `max_inflight` ingest slots. When all are busy, wait up to
    `admission_wait_s` for one (at most `_WAITERS_PER_SLOT` x `max_inflight` waiters), else
    answer `refuse()` (a 429). Both happen before the body is read, so a flood costs little;
    request status and latency are counted here for both protocols."""
    tel = hub.telemetry
    started = time.perf_counter()
    if not await _slot(hub):
        tel.ingest_rejected.labels(protocol, "overload").inc()
        response = refuse()
    else:
        tel.inflight.inc()
        try:
            response = await handle()
        finally:
            hub.slots.release()
            tel.inflight.dec()
        tel.ingest_batch_seconds.labels(protocol).observe(time.perf_counter() - started)
    tel.ingest_requests.labels(protocol, str(response.status_code)).inc()
    return response


_WAITERS_PER_SLOT = 16


async def _slot(hub: Any) -> bool:
    """Take an ingest slot, waiting a bounded time for one; False = refuse."""
    s = hub.settings
    if hub.slots is None:  # made on the event loop: the lifespan of this app
        hub.slots = asyncio.Semaphore(s.max_inflight)
    if not hub.slots.locked():
        await hub.slots.acquire()  # free: returns at once
        return True
    if s.admission_wait_s <= 0 or hub.waiting >= _WAITERS_PER_SLOT * s.max_inflight:
        return False
    hub.waiting += 1  # event-loop thread only: no lock needed
    try:
        await asyncio.wait_for(hub.slots.acquire(), s.admission_wait_s)
        return True
    except TimeoutError:
        return False
    finally:
        hub.waiting -= 1


async def prepared(hub: Any, prepare: Callable[..., T], raw: bytes, *args: Any) -> T:
    """`prepare(raw, *args, max_decoded)`: on the event loop for a small body, else (or when
    it decodes beyond INLINE_BODY_BYTES) on the hub's ingest threads with the real limit."""
    limit = hub.settings.max_body_bytes
    if len(raw) <= INLINE_WIRE_BYTES:
        bound = min(limit, INLINE_BODY_BYTES)
        try:
            return prepare(raw, *args, bound)
        except BodyError as e:
            if e.status != 413 or bound >= limit:
                raise
    return await hub.offload(prepare, raw, *args, limit)  # type: ignore[no-any-return]

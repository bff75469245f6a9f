"""HTTP edges that take data in: native NDJSON (`native.py`) and the Sentry protocol
(`sentry.py`), sharing body decoding (`body.py`) and the admission control below."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

__all__ = ["admitted"]


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

"""HTTP edges that take data in: native NDJSON (`native.py`) and the Sentry protocol
(`sentry.py`), sharing body decoding (`body.py`) and the admission control below."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

__all__ = ["admitted"]


async def admitted(hub: Any, protocol: str, handle: Callable[[], Awaitable[Response]],
                   refuse: Callable[[], Response]) -> Response:
    """Run `handle` in one of `max_inflight` ingest slots, or answer `refuse()` (a 429) at once.
    Overload is refused before the body is read, so a flood costs almost nothing; request
    status and latency are counted here for both protocols."""
    tel = hub.telemetry
    started = time.perf_counter()
    if hub.inflight >= hub.settings.max_inflight:
        tel.ingest_rejected.labels(protocol, "overload").inc()
        response = refuse()
    else:
        hub.inflight += 1  # event-loop thread only: no lock needed
        tel.inflight.inc()
        try:
            response = await handle()
        finally:
            hub.inflight -= 1
            tel.inflight.dec()
        tel.ingest_batch_seconds.labels(protocol).observe(time.perf_counter() - started)
    tel.ingest_requests.labels(protocol, str(response.status_code)).inc()
    return response

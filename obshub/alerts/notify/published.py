"""Delivery status every hub can show: the hub that delivers (the jobs' lease holder) writes
its notifiers' `status()` into one store record after each evaluation pass, only when it
changed, so `GET /api/v1/alerts` and the Alerts page answer the same on any replica behind a
load balancer (a hub's own dispatcher sends nothing while another hub holds the lease). Counts
are the delivering hub's since it took the jobs over; `hub` and `updated_at` say which and when.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog

from obshub.alerts.notify.dispatcher import NotifierStatus
from obshub.errors import StoreError
from obshub.events import format_ts, now_us
from obshub.store.base import Store

__all__ = ["KEY", "KIND", "StatusPublisher", "read_status"]

log = structlog.get_logger("obshub.alerts")

KIND, KEY = "alert-delivery", "notifiers"


class StatusPublisher:
    """Writes `statuses()` as the shared record when it differs from what this hub last wrote."""

    def __init__(self, store: Store, statuses: Callable[[], Sequence[NotifierStatus]], hub_id: str) -> None:
        self.store = store
        self.statuses = statuses
        self.hub_id = hub_id
        self._last: list[dict[str, Any]] | None = None

    def publish(self) -> bool:
        """True when a record was written. A store error is logged; the next pass tries again."""
        current = [s.to_json() for s in self.statuses()]
        if current == self._last:
            return False
        try:
            self.store.put_record(KIND, KEY, {"hub": self.hub_id, "updated_at": now_us(), "notifiers": current})
        except StoreError as e:
            log.warning("alert delivery status not written; will retry", error=str(e))
            return False
        self._last = current
        return True


_TIMES = ("last_ok_at", "last_error_at")


def read_status(store: Store) -> dict[str, Any] | None:
    """What the API answers: {hub, updated_at, notifiers: [{name, type, target (masked), sent,
    failed, rejected, dropped, pending, last_ok_at, last_error, last_error_at}]}, times as ISO
    8601; None before the first pass with notifiers."""
    rec = store.get_record(KIND, KEY)
    if rec is None:
        return None
    v = rec.value
    notifiers = [{**n, **{k: format_ts(n[k]) if n.get(k) else None for k in _TIMES}} for n in v.get("notifiers", [])]
    return {"hub": v.get("hub"), "updated_at": format_ts(int(v.get("updated_at") or 0)), "notifiers": notifiers}

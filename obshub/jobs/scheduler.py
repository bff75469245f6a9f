"""Scheduled work of the hub (APScheduler, in a background thread): retention now; rollups,
uptime probes and alerts join here. Jobs never raise into the scheduler: a failing run is
logged and retried at the next interval."""

from __future__ import annotations

import time
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from obshub.errors import StoreError
from obshub.uptime.scheduling import register as register_uptime

__all__ = ["retention", "start_jobs"]

log = structlog.get_logger("obshub.jobs")


def retention(hub: Any) -> int:
    """Lifecycle: delete events older than `retention_days` (0 keeps everything). Backends with
    their own lifecycle (OpenSearch: rollover by age/size, then dropping whole backing indices)
    expose `maintain`; the others delete rows. Returns how many were removed."""
    keep_us = hub.settings.retention_days * 86_400_000_000
    now = time.time_ns() // 1000
    maintain = getattr(hub.store, "maintain", None)
    try:
        if maintain is not None:
            out = maintain(now, keep_us)
            if out.get("rolled_over") or out.get("deleted"):
                log.info("lifecycle", **out)
            return int(out.get("deleted") or 0)
        if keep_us == 0:
            return 0
        removed = hub.store.delete_before(now - keep_us)
    except StoreError as e:
        log.warning("retention failed; will retry", error=str(e))
        return 0
    if removed:
        log.info("retention", removed=removed, days=hub.settings.retention_days)
    return removed


def start_jobs(hub: Any) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(retention, "interval", args=[hub], seconds=max(60, hub.settings.retention_interval_s),
                      id="retention")
    hub.uptime = register_uptime(scheduler, hub)  # probes of [[checks]] and POSTed checks (obshub/uptime/)
    scheduler.start()
    return scheduler

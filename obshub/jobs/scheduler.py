"""Scheduled work of the hub (APScheduler, in a background thread): retention and store upkeep,
uptime probes (obshub/uptime/scheduling.py), alert evaluation (obshub/alerts/engine.py). Jobs never raise
into the scheduler: a failing run is logged and retried at the next interval. Every hub process
runs every job (no lease across replicas yet)."""

from __future__ import annotations

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from obshub.alerts.engine import AlertEngine
from obshub.errors import StoreError
from obshub.events import now_us
from obshub.hub import Hub
from obshub.uptime.scheduling import register as register_uptime

__all__ = ["retention", "start_jobs"]

log = structlog.get_logger("obshub.jobs")


def retention(hub: Hub) -> int:
    """Lifecycle: delete events older than `retention_days` (0 keeps everything) and the
    store's own upkeep, through `Store.maintain` (OpenSearch: rollover by age/size, then
    dropping whole backing indices; SQLite: deletes in short transactions, freed pages given
    back to the file system, planner statistics). Returns how many events were removed."""
    keep_us = hub.settings.retention_days * 86_400_000_000
    now = now_us()
    try:
        out = hub.store.maintain(now, keep_us)
    except StoreError as e:
        log.warning("retention failed; will retry", error=str(e))
        return 0
    removed = int(out.get("deleted") or 0)
    if removed or out.get("rolled_over") or out.get("reclaimed_pages") or out.get("analyzed"):
        log.info("retention", days=hub.settings.retention_days, **out)
    return removed


def start_jobs(hub: Hub) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(
        retention, "interval", args=[hub], seconds=max(60, hub.settings.retention_interval_s), id="retention"
    )
    hub.uptime = register_uptime(scheduler, hub)  # probes of [[checks]] and POSTed checks (obshub/uptime/)
    # Alert rules (obshub/alerts/): a bad [[alerts]] table stops the start here (ConfigError).
    engine = AlertEngine(hub.settings, hub.store, hub.telemetry)
    scheduler.add_job(engine.tick, "interval", seconds=hub.settings.alert_interval_s, id="alerts")
    scheduler.start()
    return scheduler

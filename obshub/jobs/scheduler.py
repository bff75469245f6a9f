"""Scheduled work of the hub (APScheduler, in a background thread): retention and store upkeep,
uptime probes (obshub/uptime/scheduling.py), alert evaluation and delivery (obshub/alerts/),
metrics' rollups (obshub/jobs/rollups.py).
Jobs never raise into the scheduler: a failing run is logged and retried at the next interval.

Once per cluster: every hub schedules every job, but a job runs only on the hub holding the jobs'
lease (obshub/jobs/lease.py): wrap it in `leader_only(lease, fn)`. The uptime runner asks the
lease itself (it also needs to know when it took over)."""

from __future__ import annotations

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from obshub.alerts.engine import AlertEngine
from obshub.alerts.notify.dispatcher import Dispatcher
from obshub.alerts.notify.published import StatusPublisher
from obshub.errors import StoreError
from obshub.events import now_us
from obshub.hub import Hub
from obshub.jobs.lease import Lease, leader_only
from obshub.jobs.rollups import RollupJob
from obshub.uptime.scheduling import register as register_uptime

__all__ = ["retention", "start_jobs", "stop_jobs"]

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
    lease = Lease(hub.store, "jobs", period_s=hub.settings.lease_s)
    scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(
        leader_only(lease, retention),
        "interval",
        args=[hub],
        seconds=max(60, hub.settings.retention_interval_s),
        id="retention",
    )
    # probes of [[checks]] and POSTed checks (obshub/uptime/), by the lease's holder only
    hub.uptime = register_uptime(scheduler, hub, turn=lease)
    # Alert rules (obshub/alerts/) and their delivery (obshub/alerts/notify/): a bad [[alerts]]
    # or [[notifiers]] table stops the start here (ConfigError). Every hub keeps a dispatcher (a
    # hub that takes the lease over sends what its predecessor left in the store's log); only
    # the holder evaluates, so only it hands alerts to its dispatcher.
    dispatcher = Dispatcher(hub.settings, hub.store, hub.telemetry)
    try:
        engine = AlertEngine(hub.settings, hub.store, hub.telemetry, notify=dispatcher)
    except Exception:
        dispatcher.close(timeout_s=0)
        raise
    hub.alert_delivery = dispatcher
    published = StatusPublisher(hub.store, dispatcher.status, lease.holder)

    def alerts() -> None:
        engine.tick()
        published.publish()  # the notifiers' status, for the API and page of every hub

    scheduler.add_job(leader_only(lease, alerts), "interval", seconds=hub.settings.alert_interval_s, id="alerts")
    # Metrics' hourly and daily rollups (obshub/jobs/rollups.py); a bad [[metrics]] table stops
    # the start here (ConfigError), before the lease is taken.
    try:
        rollups = RollupJob(hub.settings, hub.store, hub.telemetry)
    except Exception:
        dispatcher.close(timeout_s=0)
        raise
    scheduler.add_job(leader_only(lease, rollups.run), "interval", seconds=hub.settings.rollup_interval_s, id="rollups")
    hub.telemetry.jobs_leader.set_function(lambda: 1.0 if lease.held() else 0.0)
    hub.telemetry.metric_values.only_while(lease.held)  # values only the holder refreshes

    def lease_metrics() -> None:
        """With workers (obshub/telemetry.py) a scrape reads every worker's values from files,
        not `set_function`: this worker's obshub_jobs_leader is written there every 5 s (and by
        /metrics when it answers), and its metric values withdrawn once it lost the lease."""
        hub.telemetry.jobs_leader.set(1.0 if lease.held() else 0.0)
        hub.telemetry.metric_values.refresh()

    scheduler.add_job(lease_metrics, "interval", seconds=5, id="lease_metrics")
    hub.jobs_lease = lease.start()
    scheduler.start()
    return scheduler


def stop_jobs(hub: Hub, scheduler: BackgroundScheduler) -> None:
    """Stop the jobs, then release the lease so another hub takes them over at once (a rolling
    restart loses no lease period). Blocking (one store write): run it off the event loop."""
    scheduler.shutdown(wait=False)
    if hub.alert_delivery is not None:  # what is queued gets its chance before the store closes
        hub.alert_delivery.close()
        hub.alert_delivery = None
    if hub.jobs_lease is not None:
        hub.jobs_lease.release()
        hub.jobs_lease = None

"""Every Prometheus metric of the hub, declared in one place.

Names follow `obshub_<thing>_<unit>_total`, base units (seconds, bytes), and labels with a
bounded set of values (outcome, reason, protocol, backend) — never a user, request or event id.
The registry is passed in so each app (and each test) has its own.

Several worker processes (`obshub serve --workers N`, obshub/cli/workers.py): the supervisor sets
PROMETHEUS_MULTIPROC_DIR, and every metric here writes its values to a file of that directory
(prometheus-client's multiprocess mode). A scrape, answered by whichever worker the connection
lands on, merges every worker's files: counters and histograms summed (a dead worker's files stay,
so no total ever goes backwards), each gauge by its `multiprocess_mode` (below, and
docs/monitoring.md "Several workers").
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["MULTIPROC_ENV", "MetricValues", "Telemetry", "shared_dir"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by the workers' supervisor, read by prometheus-client

# Batch latency buckets: a 1k-line batch takes ~10-50 ms end to end on the embedded store.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# An alert evaluation pass: ~10 ms for a few rules, seconds for 1,000 over big windows.
_ALERT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Uptime probes cross a network (TLS handshake ~50-300 ms far away); timeouts reach 60 s.
_CHECK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricValues(Collector):
    """`obshub_metric_value{project, metric, window, group}`: each defined metric's value over the
    current hour (window "1h") and UTC day ("1d"), per group ("" for every event; at most
    max_groups + "other" more), as the rollup job last computed it (obshub/jobs/rollups.py).
    Replaced whole after each run, so a scrape never sees half a run and a removed metric or
    group disappears; bounded by the metrics' group caps. Only the hub holding the jobs' lease
    runs the job and exports them (`only_while`): a hub that lost the lease stops exporting
    values nobody refreshes any more (query with `max without (instance)`).

    With workers (`shared`: the multiprocess directory) only the worker holding the lease has the
    values, but any worker may answer a scrape: the holder also writes them to
    `shared/metric_values.json` (with its pid), and every worker exports that file's values, once,
    while its writer lives; the writer removes it when it loses the lease (`refresh`)."""

    def __init__(self, shared: Path | None = None) -> None:
        self._samples: dict[tuple[str, str, str, str], float] = {}
        self._live: Callable[[], bool] = lambda: True
        self._file = shared / "metric_values.json" if shared is not None else None

    def replace(self, samples: Mapping[tuple[str, str, str, str], float]) -> None:
        self._samples = dict(samples)  # one reference swap: a scrape reads the old or the new
        if self._file is not None:
            tmp = self._file.with_name(f".metric_values.{os.getpid()}")
            body = {"pid": os.getpid(), "samples": [[*k, v] for k, v in sorted(self._samples.items())]}
            tmp.write_bytes(json.dumps(body).encode())
            tmp.replace(self._file)  # atomic: a reader sees the old file or the new one

    def only_while(self, live: Callable[[], bool]) -> None:
        """Export the samples only while `live()` (the jobs' lease is held here)."""
        self._live = live

    def refresh(self) -> None:
        """With workers: withdraw the shared values once this worker, their writer, lost the lease."""
        if self._file is not None and not self._live():
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(self._file.read_bytes())["pid"] == os.getpid():
                    self._file.unlink()

    def _current(self) -> Mapping[tuple[str, str, str, str], float]:
        if self._file is None:
            return self._samples if self._live() else {}
        try:
            body = json.loads(self._file.read_bytes())
            pid = int(body["pid"])
            if pid == os.getpid():
                return self._samples if self._live() else {}
            os.kill(pid, 0)  # its writer still runs (a dead worker's values are nobody's)
            return {(str(p), str(m), str(w), str(g)): float(v) for p, m, w, g, v in body["samples"]}
        except (OSError, ValueError, KeyError, TypeError):  # no file yet, or its writer is gone
            return {}

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            "obshub_metric_value",
            "Value of a defined metric over the current hour (window=1h) or UTC day (window=1d), per group.",
            labels=["project", "metric", "window", "group"],
        )
        for labels, value in sorted(self._current().items()):
            fam.add_metric(list(labels), value)
        yield fam


def shared_dir() -> Path | None:
    """The multiprocess directory when this process is one of several workers, else None."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


@dataclass(frozen=True)
class Telemetry:
    registry: CollectorRegistry
    scrape: CollectorRegistry  # what /metrics renders: `registry`, or with workers every worker's merged
    ingest_events: Counter  # outcome: accepted | duplicate | rejected
    ingest_bytes: Counter  # outcome: stored | refused (decoded bytes of the request body)
    ingest_rejected: Counter  # reason: validation | parse | store | limit | body | slow | overload
    ingest_requests: Counter  # status: the HTTP status class we answered with
    ingest_batch_seconds: Histogram  # whole ingest request, body read to response
    store_write_seconds: Histogram  # backend write of one batch
    store_up: Gauge  # 1 when the last readiness probe reached the store
    inflight: Gauge  # ingest requests being processed now
    check_up: Gauge  # project, check: 1 if this hub's last probe passed (names bounded by config/API)
    check_latency: Histogram  # project, check: probe time to response headers / TCP connect
    alert_notifications: Counter  # notifier ([[notifiers]] name), outcome: sent | failed | rejected | dropped
    alert_notifications_pending: Gauge  # notifier: notifications (Alertmanager: alerts) waiting to be sent
    alert_evaluation_seconds: Histogram  # one evaluation pass of every rule (obshub/alerts/engine.py)
    alerts_firing: Gauge  # project: alert instances firing after the last pass
    alert_evaluation_failures: Counter  # rules a pass could not evaluate (store trouble)
    jobs_leader: Gauge  # 1 while this hub holds the jobs' lease (obshub/jobs/lease.py)
    check_tls_expiry: Gauge  # project, check: notAfter of an https target's certificate (epoch s)
    metric_values: MetricValues  # defined metrics' current hour and day (obshub/jobs/rollups.py)

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Telemetry:
        """The hub's metrics in `registry` (default: a new one with process_* and python_info).
        As one of several workers (`shared_dir()`), /metrics renders `scrape` instead: every
        worker's files merged, python_info, and the defined metrics' values once; no process_*
        series (one worker's would change with each scrape; the CPU is the worker processes'
        together, docs/monitoring.md)."""
        r = registry if registry is not None else CollectorRegistry()
        shared = shared_dir() if registry is None else None
        scrape = r
        if shared is not None:
            scrape = CollectorRegistry()
            MultiProcessCollector(scrape, path=str(shared))  # type: ignore[no-untyped-call]  # untyped upstream
            PlatformCollector(registry=scrape)
        elif registry is None:  # the standard process_* (CPU, memory, fds) and python_info series
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        values = MetricValues(shared)
        if scrape is not r:
            scrape.register(values)
        return cls(
            registry=r,
            scrape=scrape,
            ingest_events=Counter(
                "obshub_ingest_events_total", "Events received, by outcome.", ["protocol", "outcome"], registry=r
            ),
            ingest_bytes=Counter(
                "obshub_ingest_bytes_total",
                "Decoded ingest body bytes, by outcome.",
                ["protocol", "outcome"],
                registry=r,
            ),
            ingest_rejected=Counter(
                "obshub_ingest_rejected_total",
                "Events or requests refused, by reason.",
                ["protocol", "reason"],
                registry=r,
            ),
            ingest_requests=Counter(
                "obshub_ingest_requests_total", "Ingest requests, by HTTP status.", ["protocol", "status"], registry=r
            ),
            ingest_batch_seconds=Histogram(
                "obshub_ingest_batch_seconds",
                "Ingest request latency.",
                ["protocol"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            store_write_seconds=Histogram(
                "obshub_store_write_seconds",
                "Store write latency per batch.",
                ["backend"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            # multiprocess_mode: how a scrape merges the workers' values (ignored with one process).
            # "live*": a dead worker's value goes with it. The last probe of the store, of a check
            # (the lease holder's), the last alert pass: most recent; requests and queues: summed.
            store_up=Gauge(
                "obshub_store_up",
                "1 if the store answered the last readiness probe.",
                registry=r,
                multiprocess_mode="livemostrecent",
            ),
            inflight=Gauge(
                "obshub_ingest_inflight_requests",
                "Ingest requests in progress.",
                registry=r,
                multiprocess_mode="livesum",
            ),
            check_up=Gauge(
                "obshub_check_up",
                "1 if the last uptime probe of the check passed.",
                ["project", "check"],
                registry=r,
                multiprocess_mode="livemostrecent",
            ),
            check_latency=Histogram(
                "obshub_check_latency_seconds",
                "Uptime probe latency.",
                ["project", "check"],
                buckets=_CHECK_BUCKETS,
                registry=r,
            ),
            alert_notifications=Counter(
                "obshub_alert_notifications_total",
                "Alert notification attempts, by notifier and outcome.",
                ["notifier", "outcome"],
                registry=r,
            ),
            alert_notifications_pending=Gauge(
                "obshub_alert_notifications_pending",
                "Alert notifications (alerts, for Alertmanager) waiting to be sent.",
                ["notifier"],
                registry=r,
                multiprocess_mode="livesum",  # every worker has a dispatcher (obshub/jobs/scheduler.py)
            ),
            alert_evaluation_seconds=Histogram(
                "obshub_alert_evaluation_seconds",
                "Time of one alert evaluation pass over every rule.",
                buckets=_ALERT_BUCKETS,
                registry=r,
            ),
            alerts_firing=Gauge(
                "obshub_alerts_firing",
                "Alert instances firing after the last pass.",
                ["project"],
                registry=r,
                multiprocess_mode="livemostrecent",
            ),
            alert_evaluation_failures=Counter(
                "obshub_alert_evaluation_failures_total",
                "Alert rules an evaluation pass could not evaluate.",
                registry=r,
            ),
            jobs_leader=Gauge(
                "obshub_jobs_leader",
                "1 while this hub holds the jobs lease: it runs the uptime probes, retention and alerts.",
                registry=r,
                multiprocess_mode="livemax",  # 1 if one of the workers holds it
            ),
            check_tls_expiry=Gauge(
                "obshub_check_tls_expiry_timestamp_seconds",
                "When the certificate of the https check's target expires (its notAfter), at the last probe.",
                ["project", "check"],
                registry=r,
                multiprocess_mode="livemostrecent",
            ),
            metric_values=_registered(values, r),
        )._with_known_series()

    def _with_known_series(self) -> Telemetry:
        """Export every label set the ingest paths use at 0 from the start. A series that first
        appears at N makes `rate()` drop those N (Prometheus sees no increase), so without this
        a restarted hub's first batches would be missing from every dashboard."""
        for protocol, outcomes, reasons in _KNOWN:
            for outcome in outcomes:
                self.ingest_events.labels(protocol, outcome)
            for reason in reasons:
                self.ingest_rejected.labels(protocol, reason)
            for outcome in ("stored", "refused"):
                self.ingest_bytes.labels(protocol, outcome)
            self.ingest_requests.labels(protocol, "200")
            self.ingest_batch_seconds.labels(protocol)
        return self


def _registered(collector: MetricValues, registry: CollectorRegistry) -> MetricValues:
    registry.register(collector)
    return collector


# (protocol, ingest_events outcomes, ingest_rejected reasons): what obshub/ingest/ counts.
_KNOWN = (
    (
        "native",
        ("accepted", "duplicate", "rejected"),
        ("limit", "body", "slow", "parse", "validation", "store", "overload"),
    ),
    (
        "sentry",
        ("accepted", "duplicate", "rejected", "skipped"),
        ("limit", "body", "slow", "parse", "validation", "store", "overload"),
    ),
    *(  # the other protocols (obshub/ingest/otlp/, es.py, loki.py)
        (
            p,
            ("accepted", "duplicate", "rejected"),
            ("limit", "body", "slow", "parse", "validation", "store", "overload"),
        )
        for p in ("otlp", "es", "loki")
    ),
)

"""The hub's metrics exist at 0 before any traffic: Prometheus's rate() ignores what a series
already holds when it first appears, so a restarted hub's first batch would vanish from graphs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from obshub.telemetry import MetricValues, Telemetry


def test_ingest_series_are_exported_at_zero_from_the_start() -> None:
    text = generate_latest(Telemetry.create().registry).decode()
    for line in (
        'obshub_ingest_events_total{outcome="accepted",protocol="native"} 0.0',
        'obshub_ingest_events_total{outcome="rejected",protocol="native"} 0.0',
        'obshub_ingest_events_total{outcome="accepted",protocol="sentry"} 0.0',
        'obshub_ingest_rejected_total{protocol="native",reason="validation"} 0.0',
        'obshub_ingest_rejected_total{protocol="sentry",reason="overload"} 0.0',
        'obshub_ingest_bytes_total{outcome="stored",protocol="sentry"} 0.0',
        'obshub_ingest_requests_total{protocol="native",status="200"} 0.0',
        'obshub_ingest_batch_seconds_count{protocol="native"} 0.0',
    ):
        assert line in text, line
    assert "obshub_check_up{" not in text, "check series appear with their checks, not before"


# A worker of `serve --workers N` that holds the jobs' lease: it writes its defined metrics'
# values to the shared directory, then (after "lose") no longer holds the lease.
_WRITER = """
import sys, time
from pathlib import Path
from obshub.telemetry import MetricValues
held = [True]
v = MetricValues(Path(sys.argv[1]))
v.only_while(lambda: held[0])
v.replace({("shop", "orders", "1h", ""): 42.0})
print("written", flush=True)
if sys.stdin.readline().strip() == "lose":
    held[0] = False
    v.refresh()
    print("withdrawn", flush=True)
    sys.stdin.readline()
"""


def _values(shared: Path) -> str:
    reg = CollectorRegistry()
    reg.register(MetricValues(shared))
    return generate_latest(reg).decode()


def test_the_lease_holders_metric_values_are_exported_by_every_worker_while_it_lives_and_holds(
    tmp_path: Path,
) -> None:
    line = 'obshub_metric_value{group="",metric="orders",project="shop",window="1h"} 42.0'
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "written"
        assert line in _values(tmp_path)  # this process is another worker: it exports them too
        writer.stdin.write("lose\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "withdrawn"
        assert "obshub_metric_value{" not in _values(tmp_path)  # a lease lost: nobody refreshes them
    finally:
        if writer.stdin is not None:
            writer.stdin.close()
        writer.wait(10)
        if writer.stdout is not None:
            writer.stdout.close()

    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline().strip() == "written"
    writer.kill()  # a holder SIGKILLed: its values are nobody's
    writer.wait(10)
    writer.stdin.close()
    writer.stdout.close()
    assert "obshub_metric_value{" not in _values(tmp_path)

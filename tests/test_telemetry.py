"""The hub's metrics exist at 0 before any traffic: Prometheus's rate() ignores what a series
already holds when it first appears, so a restarted hub's first batch would vanish from graphs."""

from __future__ import annotations

from prometheus_client import generate_latest

from obshub.telemetry import Telemetry


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

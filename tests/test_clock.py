"""The per-host clock-offset estimator and the corrected order the trace page uses."""

from __future__ import annotations

from typing import Any

from obshub.clock import MIN_SKEW_US, WINDOW_S, SkewEstimator, corrected_order, corrected_ts, parse_sent_at

S = 1_000_000


def _observe(est: SkewEstimator, host: str, offset_us: int, delays_us: list[int], t0: int = 1_700_000_000 * S) -> None:
    """Batches from a host whose clock is `offset_us` ahead, each arriving `delay` after it was sent."""
    for i, delay in enumerate(delays_us):
        sent_true = t0 + i * S
        est.observe(1, host, sent_true + offset_us, sent_true + delay)


def test_min_delay_sample_wins() -> None:
    est = SkewEstimator()
    _observe(est, "fast", 3 * S, [80_000, 5_000, 400_000, 20_000])
    _observe(est, "slow", -2 * S, [150_000, 2_000, 90_000])
    off = est.offsets(1, ["fast", "slow", "unknown"])
    # The least-delayed batch bounds the error: 5 ms and 2 ms.
    assert off["fast"] == 3 * S - 5_000
    assert off["slow"] == -2 * S - 2_000
    assert off["unknown"] == 0


def test_plus3_minus2_hosts_order_corrected() -> None:
    """web-a runs 3 s fast, web-b 2 s slow. A request enters web-a, calls web-b, returns: by raw
    timestamps web-b's lines come first (and web-a's reply looks 5 s late); corrected, the
    real order comes back."""
    est = SkewEstimator()
    _observe(est, "web-a", 3 * S, [3_000, 1_000, 7_000])
    _observe(est, "web-b", -2 * S, [4_000, 1_500])
    offsets = est.offsets(1, ["web-a", "web-b"])
    t = 1_700_000_100 * S  # true time (hub clock) the request arrives
    true_times = {"a-recv": t, "b-handle": t + 10_000, "b-reply": t + 25_000, "a-reply": t + 40_000}
    host_of = {"a-recv": "web-a", "b-handle": "web-b", "b-reply": "web-b", "a-reply": "web-a"}
    skew_of = {"web-a": 3 * S, "web-b": -2 * S}
    events: list[dict[str, Any]] = [
        {"id": k, "host": host_of[k], "ts": v + skew_of[host_of[k]]} for k, v in true_times.items()
    ]
    raw = [e["id"] for e in sorted(events, key=lambda e: e["ts"])]
    assert raw == ["b-handle", "b-reply", "a-recv", "a-reply"]
    assert [e["id"] for e in corrected_order(events, offsets)] == ["a-recv", "b-handle", "b-reply", "a-reply"]
    # Corrected times are within the estimator's error (the smallest delay) of the truth.
    for e in events:
        assert abs(corrected_ts(e["ts"], e["host"], offsets) - true_times[e["id"]]) <= 1_500


def test_small_offsets_are_noise() -> None:
    est = SkewEstimator()
    _observe(est, "h", MIN_SKEW_US - 50_000, [1_000])
    assert est.offset_us(1, "h") == 0


def test_old_samples_are_forgotten() -> None:
    """A host fixed by NTP: after the window only the new, in-sync samples count."""
    est = SkewEstimator()
    est.observe(1, "h", 10 * S, 0, now=0.0)
    est.observe(1, "h", 1_000, 0, now=WINDOW_S + 5)
    assert est.offset_us(1, "h", now=WINDOW_S + 6) == 0


def test_ties_keep_input_order() -> None:
    events = [{"id": str(i), "host": "h", "ts": 5} for i in range(5)]
    assert [e["id"] for e in corrected_order(events, {"h": 1})] == ["0", "1", "2", "3", "4"]


def test_parse_sent_at() -> None:
    assert parse_sent_at("1700000000.25") == 1_700_000_000_250_000
    assert parse_sent_at(None) is None
    assert parse_sent_at("soon") is None
    assert parse_sent_at("-5") is None

"""POST /api/v1/ingest on every backend: the contract's accept/reject report and every 4xx."""

from __future__ import annotations

import gzip

import orjson
import pytest
import zstandard

from obshub.store.opensearch.writer import BULK_EVENTS
from tests.factories import event, now_us
from tests.hubproc import LiveHub


def test_accepts_batch_and_reports_counts(hub: LiveHub) -> None:
    evs = [event() for _ in range(20)]
    r = hub.ingest(evs)
    assert r.status_code == 200
    assert r.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
    got = {e["id"] for e in hub.search_all()}
    assert got == {e["id"] for e in evs}


def test_reingest_same_ids_is_stored_once(hub: LiveHub) -> None:
    evs = [event() for _ in range(10)]
    assert hub.ingest(evs).json()["accepted"] == 10
    r = hub.ingest([*evs[:5], event()])
    assert r.json() == {"accepted": 1, "duplicates": 5, "rejected": []}
    assert len(hub.search_all()) == 11


def test_big_batches_count_duplicates_within_and_across_requests(hub: LiveHub) -> None:
    # Large batches take another insert path in the SQLite store (staged): same counts.
    evs = [event() for _ in range(300)]
    assert hub.ingest(evs + evs[:40]).json() == {"accepted": 300, "duplicates": 40, "rejected": []}
    r = hub.ingest(evs[100:200] + [event() for _ in range(50)])
    assert r.json() == {"accepted": 50, "duplicates": 100, "rejected": []}
    assert len(hub.search_all()) == 350


def test_mixed_batch_keeps_every_valid_line(hub: LiveHub) -> None:
    good = [event(), event(), event()]
    body = b"\n".join(
        [
            orjson.dumps(good[0]),
            b"{not json",
            orjson.dumps(good[1]),
            orjson.dumps({"message": "x", "level": "loud"}),
            b"[1, 2]",
            orjson.dumps({"message": "x", "ts": "yesterday-ish"}),
            orjson.dumps(good[2]),
            orjson.dumps({"message": "x", "kind": "metric"}),
        ]
    )
    r = hub.ingest(body)
    assert r.status_code == 200
    data = r.json()
    assert data["accepted"] == 3
    assert [x["line"] for x in data["rejected"]] == [2, 4, 5, 6, 8]
    errors = {x["line"]: x["error"] for x in data["rejected"]}
    assert "invalid JSON" in errors[2]
    assert errors[4].startswith("level:") and "loud" in errors[4]
    assert "JSON object" in errors[5]
    assert errors[6].startswith("ts:")
    assert errors[8].startswith("kind:")
    assert {e["id"] for e in hub.search_all()} == {e["id"] for e in good}


def test_a_big_request_reports_true_line_numbers(
    hub: LiveHub, store_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # Big batches are written as several sub-bulks (OpenSearch: past 2 x BULK_EVENTS) or
    # statements (SQLite: 1,024 rows each): counts, duplicates across them and line numbers must
    # be those of the whole request.
    n = 2 * BULK_EVENTS + 400
    evs = [event() for _ in range(n)]
    lines = [orjson.dumps(e) for e in evs]
    bad = {1: b"{not json", BULK_EVENTS + 1: b"[1]", n: orjson.dumps({"message": "x", "level": "loud"})}
    for line, text in bad.items():
        lines[line - 1] = text
    lines[BULK_EVENTS + 255] = lines[3]  # repeats line 4, in another sub-bulk
    # A 40,000-byte keyword is past Lucene's term limit: OpenSearch refuses that one document
    # (SQLite stores it). Its line, in the last sub-bulk, must be reported.
    lines[n - 3] = orjson.dumps(event(service="s" * 40_000))
    r = hub.ingest(b"\n".join(lines))
    assert r.status_code == 200, r.text
    data = r.json()
    refused = [x["line"] for x in data["rejected"] if x["error"].startswith("store refused the event")]
    assert refused == ([n - 2] if store_url.startswith("opensearch") else [])
    assert [x["line"] for x in data["rejected"] if x["line"] not in refused] == sorted(bad)
    assert data["duplicates"] == 1
    assert data["accepted"] == n - len(bad) - 1 - len(refused)
    assert len(hub.search_all()) == data["accepted"]
    log = "".join(capfd.readouterr())  # the hub's structlog lines: a refusal is logged, as for Sentry
    assert ("store refused events" in log and "protocol=native" in log) == bool(refused)


def test_longest_ids_are_stored_once(hub: LiveHub) -> None:
    # 128 characters of 4 bytes each: valid (docs/api.md), and past OpenSearch's 512-byte _id,
    # which once failed the whole bulk with a 500.
    ev = event(id="\U0001f600" * 128)
    assert hub.ingest([ev, event()]).json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert hub.ingest([ev]).json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert [e["id"] for e in hub.search_all(f'id:"{ev["id"]}"')] == [ev["id"]]


def test_gzip_and_zstd_bodies(hub: LiveHub) -> None:
    a, b = [event() for _ in range(5)], [event() for _ in range(5)]
    body_a = gzip.compress(b"\n".join(orjson.dumps(e) for e in a))
    body_b = zstandard.compress(b"\n".join(orjson.dumps(e) for e in b))
    assert hub.ingest(body_a, headers={"Content-Encoding": "gzip"}).json()["accepted"] == 5
    assert hub.ingest(body_b, headers={"Content-Encoding": "zstd"}).json()["accepted"] == 5
    assert len(hub.search_all()) == 10


def test_small_body_that_inflates_past_the_inline_bound_is_still_stored(hub: LiveHub) -> None:
    # Small on the wire, so the hub starts on the event loop; decoded it is past the inline
    # bound (admission.INLINE_BODY_BYTES), so it must finish on a worker thread, not fail.
    from obshub.ingest.admission import INLINE_BODY_BYTES, INLINE_WIRE_BYTES

    evs = [event(message="checkout " + "x" * 200) for _ in range(1000)]
    raw = b"\n".join(orjson.dumps(e) for e in evs)
    body = zstandard.compress(raw)
    assert len(body) <= INLINE_WIRE_BYTES < INLINE_BODY_BYTES < len(raw)
    r = hub.ingest(body, headers={"Content-Encoding": "zstd"})
    assert r.json() == {"accepted": 1000, "duplicates": 0, "rejected": []}


def test_not_ndjson_at_all_is_400(hub: LiveHub) -> None:
    r = hub.ingest(b"\x00\x01binary garbage\nmore garbage")
    assert r.status_code == 400
    assert "NDJSON" in r.json()["error"]
    assert hub.ingest(b"").status_code == 400
    assert hub.ingest(b"\n\n  \n").status_code == 400


def test_unknown_encoding_is_415(hub: LiveHub) -> None:
    r = hub.ingest(orjson.dumps(event()), headers={"Content-Encoding": "lz4"})
    assert r.status_code == 415
    assert "lz4" in r.json()["error"]


def test_corrupt_compressed_body_is_400(hub: LiveHub) -> None:
    body = gzip.compress(orjson.dumps(event()))
    r = hub.ingest(body[: len(body) // 2], headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400


def test_body_over_limit_is_413(store_url: str) -> None:
    h = LiveHub(store_url, max_body_bytes=64 * 1024, max_wire_bytes=64 * 1024).start()
    try:
        big = b"\n".join(orjson.dumps(event(message="x" * 1000)) for _ in range(100))
        r = h.ingest(big)
        assert r.status_code == 413
        assert h.search_all() == []
    finally:
        h.stop()


def test_decompression_bomb_is_413_on_decoded_size(store_url: str) -> None:
    # 20 MiB of one repeated valid line gzips to ~20 KiB: tiny on the wire, huge decoded.
    h = LiveHub(store_url, max_body_bytes=1024 * 1024).start()
    try:
        line = orjson.dumps(event()) + b"\n"
        bomb = gzip.compress(line * (20 * 1024 * 1024 // len(line)))
        assert len(bomb) < 1024 * 1024
        r = h.ingest(bomb, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413
        assert "decoded" in r.json()["error"]
    finally:
        h.stop()


def test_event_limits_reject_with_reason(store_url: str) -> None:
    h = LiveHub(store_url, max_attr_keys=5, max_attr_depth=2, max_value_bytes=100).start()
    try:
        r = h.ingest(
            [
                event(attrs={f"k{i}": i for i in range(6)}),
                event(attrs={"a": {"b": {"c": 1}}}),
                event(attrs={"big": "x" * 200}),
                event(attrs={"ok": 1, "nested": {"fine": True}}),
            ]
        )
        data = r.json()
        assert data["accepted"] == 1
        reasons = [x["error"] for x in data["rejected"]]
        assert "6 keys" in reasons[0] and "limit of 5" in reasons[0]
        assert "nested deeper" in reasons[1]
        assert "attrs.big" in reasons[2] and "limit of 100" in reasons[2]
        (stored,) = h.search_all()
        assert stored["attrs"] == {"ok": 1, "nested.fine": True}
    finally:
        h.stop()


def test_aliases_levels_timestamps_and_attrs(hub: LiveHub) -> None:
    t = now_us() - 5_000_000
    lines = [
        {"id": "a1", "msg": "from msg", "levelname": "WARN", "@timestamp": "2026-01-02T03:04:05.123456Z"},
        {"id": "a2", "event": "from structlog", "severity": 3, "time": t // 1_000_000},
        {"id": "a3", "@message": "from at", "level": "fatal", "timestamp": t // 1000},
        {"id": "a4", "message": "ns epoch", "level": 7, "ts": t * 1000, "plan": "pro", "req": {"path": "/x"}},
        {"id": "a5", "message": "python level", "level": 40, "ts": t, "user_id": 42},
    ]
    assert hub.ingest(lines).json()["accepted"] == 5
    got = {e["id"]: e for e in hub.search_all(**{"from": "2020-01-01T00:00:00Z"})}
    assert got["a1"]["message"] == "from msg" and got["a1"]["level"] == "warning"
    assert got["a1"]["ts"] == "2026-01-02T03:04:05.123456Z"
    assert got["a2"]["message"] == "from structlog" and got["a2"]["level"] == "error"
    assert got["a3"]["level"] == "critical"
    assert got["a4"]["level"] == "debug"
    assert got["a4"]["attrs"] == {"plan": "pro", "req.path": "/x"}
    assert got["a5"]["level"] == "error" and got["a5"]["user_id"] == "42"
    # the four numeric forms of the same instant agree (s, ms, ns, µs), to their precision
    assert got["a4"]["ts"] == got["a5"]["ts"]
    assert got["a3"]["ts"][:23] == got["a5"]["ts"][:23]
    assert got["a2"]["ts"][:19] == got["a5"]["ts"][:19]


def test_error_kind_inferred_and_message_derived(hub: LiveHub) -> None:
    r = hub.ingest([{"id": "e1", "error": {"type": "KeyError", "value": "'cart'", "stack": []}}])
    assert r.json()["accepted"] == 1
    (e,) = hub.search_all()
    assert e["kind"] == "error" and e["level"] == "error"
    assert e["message"] == "KeyError: 'cart'"

"""Operations endpoints and the failure paths of ingest: store down (503), overload (429),
metrics that move with what happened."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import zstandard

from tests.factories import event
from tests.hubproc import LiveHub, metric


def test_health_ready_metrics(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    assert httpx.get(f"{h.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{h.url}/readyz").status_code == 200
    h.ingest([event(), event(), {"level": "nope"}])
    h.ingest([event(id="dup-1"), event(id="dup-1")])
    assert metric(h, "obshub_ingest_events_total", outcome="accepted") == 3
    assert metric(h, "obshub_ingest_events_total", outcome="duplicate") == 1
    assert metric(h, "obshub_ingest_events_total", outcome="rejected") == 1
    assert metric(h, "obshub_ingest_rejected_total", reason="validation") == 1
    assert metric(h, "obshub_ingest_batch_seconds_count", protocol="native") == 2
    assert metric(h, "obshub_store_write_seconds_count", backend="sqlite") == 2
    assert metric(h, "obshub_ingest_bytes_total", outcome="stored") > 100
    h.ingest(b"x", headers={"Content-Encoding": "br"})
    assert metric(h, "obshub_ingest_requests_total", status="415") == 1
    assert h.ingest([event()], token="wrong").status_code == 401  # refused before admission, still counted
    assert h.ingest([event()], token=h.read_token).status_code == 403
    assert metric(h, "obshub_ingest_requests_total", protocol="native", status="401") == 1
    assert metric(h, "obshub_ingest_requests_total", protocol="native", status="403") == 1


def test_store_down_is_503_with_retry_after_and_not_ready(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    assert h.ingest([event()]).status_code == 200
    h.store.close()  # the store goes away under a running hub
    r = h.ingest([event()])
    assert r.status_code == 503
    assert metric(h, "obshub_ingest_requests_total", protocol="native", status="503") == 1  # counted too
    assert int(r.headers["retry-after"]) > 0
    assert "store unavailable" in r.json()["error"]
    ready = httpx.get(f"{h.url}/readyz")
    assert ready.status_code == 503 and ready.headers["retry-after"]
    assert h.get("/api/v1/search").status_code == 503
    assert httpx.get(f"{h.url}/healthz").status_code == 200  # the process itself is fine
    h.store.open()
    assert h.ingest([event()]).status_code == 200
    assert httpx.get(f"{h.url}/readyz").status_code == 200
    assert len(h.search_all()) == 2  # what was acknowledged, no more


class HeldSlot:
    """A chunked ingest request (size unknown: it needs a full slot) held open until release()."""

    def __init__(self, h: LiveHub) -> None:
        self.h = h
        self.gate = threading.Event()
        self.statuses: list[int] = []
        self.thread = threading.Thread(target=self._post)
        self.thread.start()
        deadline = time.monotonic() + 5
        while metric(h, "obshub_ingest_inflight_requests") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)

    def _body(self) -> Iterator[bytes]:
        yield orjson.dumps(event()) + b"\n"
        self.gate.wait(10)
        yield orjson.dumps(event()) + b"\n"

    def _post(self) -> None:
        self.statuses.append(post(self.h, self._body()))

    def release(self) -> list[int]:
        self.gate.set()
        self.thread.join(10)
        return self.statuses


def post(h: LiveHub, body: Any, **headers: str) -> int:
    """POST an NDJSON body: bytes go with a Content-Length, an iterator goes chunked."""
    r = httpx.post(
        f"{h.url}/api/v1/ingest",
        content=body,
        timeout=30,
        headers={"Authorization": f"Bearer {h.ingest_token}", **headers},
    )
    return r.status_code


def chunked(*lines: bytes) -> Iterator[bytes]:
    yield from lines


def test_overload_is_429_with_retry_after(tmp_path: Path) -> None:
    h = LiveHub(f"sqlite:///{tmp_path}/o.db", max_inflight=1, admission_wait_s=0.3).start()
    try:
        held = HeldSlot(h)
        t0 = time.monotonic()
        r = httpx.post(
            f"{h.url}/api/v1/ingest",
            content=chunked(orjson.dumps(event())),
            timeout=30,
            headers={"Authorization": f"Bearer {h.ingest_token}"},
        )
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert time.monotonic() - t0 >= 0.3  # it queued for admission_wait_s first
        # small requests (declared Content-Length <= 64 KiB) have slots of their own
        assert h.ingest([event()]).status_code == 200
        assert held.release() == [200]
        assert post(h, chunked(orjson.dumps(event()))) == 200
        assert len(h.search_all()) == 4
    finally:
        h.stop()


def test_a_small_body_that_inflates_needs_a_full_slot(tmp_path: Path) -> None:
    """Small on the wire, big once decoded: it may hold real memory, so it takes a full slot."""
    h = LiveHub(f"sqlite:///{tmp_path}/i.db", max_inflight=1, admission_wait_s=0.3).start()
    try:
        big = zstandard.compress(b"\n".join(orjson.dumps(event(message="x" * 300)) for _ in range(1000)))
        assert len(big) < 64 * 1024
        held = HeldSlot(h)
        assert post(h, big, **{"Content-Encoding": "zstd"}) == 429
        assert held.release() == [200]
        assert post(h, big, **{"Content-Encoding": "zstd"}) == 200
        assert len(h.search_all()) == 1002
    finally:
        h.stop()


def test_a_burst_beyond_max_inflight_queues_instead_of_429(tmp_path: Path) -> None:
    """A burst waits for a slot (admission_wait_s) and is stored; nothing refused."""
    h = LiveHub(f"sqlite:///{tmp_path}/q.db", max_inflight=1, admission_wait_s=10).start()
    try:
        held = HeldSlot(h)
        statuses: list[int] = []
        queued = [
            threading.Thread(target=lambda: statuses.append(post(h, chunked(orjson.dumps(event()))))) for _ in range(5)
        ]
        for t in queued:
            t.start()
        time.sleep(0.5)
        assert statuses == []  # all five wait behind the held slot, none refused
        assert held.release() == [200]
        for t in queued:
            t.join(20)
        assert statuses == [200] * 5
        assert len(h.search_all()) == 7
    finally:
        h.stop()


def test_a_content_length_that_is_not_digits_never_reaches_the_app(sqlite_hub: LiveHub) -> None:
    """obshub/ingest/body.py reads Content-Length with a bare int(): uvicorn's HTTP parser
    (httptools, as `obshub serve` runs it) refuses anything else first. Were that to change,
    int() would accept `+5`, ` 5_0` or Arabic-Indic digits and raise on `abc` (a 500): this test would say so."""
    import socket

    h = sqlite_hub
    for path in (b"/api/v1/ingest", b"/api/%d/envelope/" % h.project_id):
        for value in (b"abc", b"+2", b"2_0", b"0x2", b"-1", b"2.0", b"\xd9\xa2", b"9" * 25):
            with socket.create_connection(("127.0.0.1", h.port), timeout=5) as s:
                s.sendall(
                    b"POST "
                    + path
                    + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    + h.ingest_token.encode()
                    + b"\r\nContent-Length: "
                    + value
                    + b"\r\n\r\n{}"
                )
                answer = s.recv(65536)
            assert answer.startswith(b"HTTP/1.1 400 "), (path, value, answer)
            assert b"Invalid HTTP request" in answer, (path, value, answer)  # uvicorn's, not the hub's
    assert metric(h, "obshub_ingest_requests_total", protocol="native", status="400") == 0
    assert h.ingest([event()]).status_code == 200


def _sentry(h: LiveHub, body: Any, key: str | None = None) -> httpx.Response:
    key = key or str(h.creds["dsn"]).split("//")[1].split("@")[0]
    return httpx.post(
        f"{h.url}/api/{h.project_id}/envelope/",
        content=body,
        timeout=30,
        headers={"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"},
    )


def test_a_sentry_key_is_checked_before_admission(tmp_path: Path) -> None:
    """Both protocols refuse bad credentials before they wait for a slot (obshub/ingest/pipeline.py):
    under overload a wrong key is a 401 at once, not a 429 after `admission_wait_s` (1 s: a 401
    within it is no wait, even on a loaded machine, where 0.3 s was once exceeded)."""
    h = LiveHub(f"sqlite:///{tmp_path}/a.db", max_inflight=1, admission_wait_s=1.0).start()
    try:
        env = b"{}\n" + orjson.dumps({"type": "event"}) + b"\n" + orjson.dumps({"message": "boom"})
        held = HeldSlot(h)  # the one full slot; a chunked envelope needs one too
        t0 = time.monotonic()
        r = _sentry(h, chunked(env), key="wrong")
        assert r.status_code == 401 and time.monotonic() - t0 < 1.0, r.text
        assert r.headers["access-control-allow-origin"] == "*" and "detail" in r.json()
        assert _sentry(h, chunked(env)).status_code == 429  # a good key waits for its slot
        assert held.release() == [200]
        assert metric(h, "obshub_ingest_requests_total", protocol="sentry", status="401") == 1
        assert metric(h, "obshub_ingest_batch_seconds_count", protocol="sentry") == 0  # never admitted
    finally:
        h.stop()


def test_both_protocols_count_a_bad_line_or_item_alike(sqlite_hub: LiveHub) -> None:
    """One pipeline, one way of counting: a line or item that cannot be stored is a rejected
    event (and a validation rejection) for native NDJSON and Sentry envelopes alike."""
    h = sqlite_hub
    assert h.ingest([event(), {"level": "nope"}]).json()["accepted"] == 1
    env = (
        b"{}\n"
        + orjson.dumps({"type": "event"})
        + b"\n"
        + orjson.dumps({"message": "boom"})
        + b"\n"
        + orjson.dumps({"type": "event"})
        + b"\n"
        + orjson.dumps({"level": "nope"})
    )
    r = _sentry(h, env)
    assert r.status_code == 400 and r.json()["stored"] == 1 and r.json()["detail"].startswith("item 2 (event): level:")
    for protocol in ("native", "sentry"):
        assert metric(h, "obshub_ingest_events_total", protocol=protocol, outcome="accepted") == 1
        assert metric(h, "obshub_ingest_events_total", protocol=protocol, outcome="rejected") == 1, protocol
        assert metric(h, "obshub_ingest_rejected_total", protocol=protocol, reason="validation") == 1

"""The two-service example, for real: two uvicorn processes, each configured as its own service
and "host", writing its own file; one request into A that calls B over httpx."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hubproc import free_port, wait_healthy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_services"


class TwoServices:
    def __init__(self, logs: Path):
        self.web_log = logs / "web-1" / "shop-web.jsonl"
        self.api_log = logs / "api-1" / "payments.jsonl"
        self.web_port, self.api_port = free_port(), free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> TwoServices:
        api = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "payments_api.py"), "--port", str(self.api_port), "--log", str(self.api_log)]
        )
        self.procs.append(api)
        web = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLE / "shop_web.py"),
                "--port",
                str(self.web_port),
                "--log",
                str(self.web_log),
                "--backend",
                self.api_url,
            ]
        )
        self.procs.append(web)
        wait_healthy(self.api_url, api)
        wait_healthy(self.web_url, web)
        return self

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def two_services(tmp_path: Path) -> Iterator[TwoServices]:
    services = TwoServices(tmp_path / "logs").start()
    try:
        yield services
    finally:
        services.stop()


def _wait_lines(read_jsonl, path: Path, pred, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [x for x in read_jsonl(path) if pred(x)]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_one_trace_spans_both_services(two_services: TwoServices, read_jsonl) -> None:
    resp = httpx.get(f"{two_services.web_url}/checkout", params={"user": "alice"}, timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    rid, trace = resp.headers["x-request-id"], body["trace_id"]
    assert body["request_id"] == rid

    def mine(x: dict) -> bool:
        return x.get("trace_id") == trace

    # access lines are written after the response: wait for both
    _wait_lines(read_jsonl, two_services.web_log, lambda x: mine(x) and x["logger"] == "obshub_sdk.access")
    _wait_lines(read_jsonl, two_services.api_log, lambda x: mine(x) and x["logger"] == "obshub_sdk.access")
    web = [x for x in read_jsonl(two_services.web_log) if mine(x)]
    api = [x for x in read_jsonl(two_services.api_log) if mine(x)]
    assert {x["message"] for x in web} >= {
        "checkout started",
        "checkout_started",
        "order confirmed",
        "GET /checkout 200",
    }
    assert {x["message"] for x in api} >= {"charging card", "card charged", "POST /charge 200"}
    for lines, service, host in ((web, "shop-web", "web-1"), (api, "payments", "api-1")):
        assert {(x["service"], x["host"]) for x in lines} == {(service, host)}
        assert {x["request_id"] for x in lines} == {rid}
        assert {x["user_id"] for x in lines} == {"alice"}  # B learned it from baggage
        assert {x["session_id"] for x in lines} == {"sess-alice"}
    web_span = {x["span_id"] for x in web}
    api_span = {x["span_id"] for x in api}
    assert len(web_span) == len(api_span) == 1 and web_span != api_span
    api_access = next(x for x in api if x["logger"] == "obshub_sdk.access")
    assert api_access["attrs"]["parent_span_id"] == web_span.pop()
    events = [x for x in web + api if x.get("kind") == "event"]
    assert {x["name"] for x in events} == {"checkout_started", "order_completed", "payment_captured"}


def test_failure_in_b_is_correlated_with_a(two_services: TwoServices, read_jsonl) -> None:
    resp = httpx.get(f"{two_services.web_url}/checkout", params={"user": "bob", "fail": "1"}, timeout=10)
    assert resp.status_code == 402
    trace = resp.json()["trace_id"]
    [error] = _wait_lines(read_jsonl, two_services.api_log, lambda x: x.get("trace_id") == trace and "error" in x)
    assert error["user_id"] == "bob" and error["level"] == "error"
    assert error["error"]["type"].endswith("CardDeclined")
    assert any(f["function"] == "_charge" and f["in_app"] for f in error["error"]["stack"])
    [cause] = error["error"]["chain"]
    assert cause["relation"] == "cause" and cause["type"].endswith("GatewayError")
    [warning] = _wait_lines(
        read_jsonl, two_services.web_log, lambda x: x.get("trace_id") == trace and x["level"] == "warning"
    )
    assert warning["message"] == "payment failed"

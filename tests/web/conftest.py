"""A live hub loaded with the demo dataset (plus a trace across two hosts with wrong clocks), an
httpx client logged in through the web form, and Debian's chromium driven by Playwright. Also
`served_demo`: `obshub serve --demo` itself (what `make run` starts), as a subprocess.

Chromium comes from `scripts/browser.sh` (apt). Without it the browser tests skip locally and
fail in CI (CI=true), like the OpenSearch tests.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from obshub.demo import CLOCK_SKEW_US, generate
from obshub.events import parse_ts
from tests.ci import unavailable
from tests.hubproc import CLOCK_SAMPLES, HubProcess, LiveHub, wait_until

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
S = 1_000_000
SKEWED_TRACE = "req-skewed-clocks"
EDGE_SKEW_S, API_SKEW_S = 3.0, -2.0  # edge-1 runs 3 s fast, api-9 2 s slow


def skewed_batches(now_us: int) -> dict[str, list[dict[str, Any]]]:
    """One slow request: edge-1 receives it, calls api-9, replies; 0.5 s between steps, well above
    the estimator's error (the quickest batch's delay, milliseconds here). Timestamps carry each
    host's clock error, so by raw time api-9's lines come before the request even arrived."""
    t = now_us - 60 * S
    base = {"request_id": SKEWED_TRACE, "trace_id": SKEWED_TRACE, "env": "prod", "user_id": "u-skew"}
    edge = int(EDGE_SKEW_S * S)
    api = int(API_SKEW_S * S)
    return {
        "edge-1": [
            {
                **base,
                "id": "skew-1",
                "ts": t + edge,
                "host": "edge-1",
                "service": "gateway",
                "message": "GET /orders/7 received",
            },
            {
                **base,
                "id": "skew-4",
                "ts": t + 1_500_000 + edge,
                "host": "edge-1",
                "service": "gateway",
                "message": "GET /orders/7 200 1500ms",
            },
        ],
        "api-9": [
            {
                **base,
                "id": "skew-2",
                "ts": t + 500_000 + api,
                "host": "api-9",
                "service": "orders",
                "message": "load order 7",
            },
            {
                **base,
                "id": "skew-3",
                "ts": t + 1_000_000 + api,
                "host": "api-9",
                "service": "orders",
                "message": "order 7 loaded in 500ms",
            },
        ],
    }


def ingest_with_clock(hub: LiveHub, lines: list[dict[str, Any]], skew_s: float) -> None:
    """As an agent on a host whose clock is off by `skew_s` would send them."""
    body = b"\n".join(orjson.dumps(x) for x in lines)
    r = hub.ingest(
        body, headers={"X-Obshub-Sent-At": f"{time.time() + skew_s:.6f}", "Content-Type": "application/x-ndjson"}
    )
    assert r.status_code == 200 and r.json()["accepted"] + r.json()["duplicates"] == len(lines), r.text


@pytest.fixture(scope="module")
def demo_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    hub = LiveHub(f"sqlite:///{tmp_path_factory.mktemp('web')}/obshub.db").start()
    now = time.time_ns() // 1000
    demo = generate(now)
    for host in sorted({e.get("host", "") for e in demo}):  # per host, each with its own clock
        mine = [e for e in demo if e.get("host", "") == host]
        # In batches of 500, as `obshub demo` and agents send (one batch of a host's ~2,300
        # events, with the product analytics demo, took long enough to skew web-2's estimate).
        for i in range(0, len(mine), 500):
            ingest_with_clock(hub, mine[i : i + 500], CLOCK_SKEW_US.get(host, 0) / 1e6)
        for _ in range(CLOCK_SAMPLES):  # duplicates of one line: only the clock sample matters
            ingest_with_clock(hub, mine[:1], CLOCK_SKEW_US.get(host, 0) / 1e6)
    batches = skewed_batches(now)
    for _ in range(CLOCK_SAMPLES):  # like an agent's steady batches: the quickest one sets the estimate
        ingest_with_clock(hub, batches["edge-1"], EDGE_SKEW_S)
        ingest_with_clock(hub, batches["api-9"], API_SKEW_S)
    yield hub
    hub.stop()


class DemoServe(HubProcess):
    """`obshub serve --demo` (`make run`): the demo written at start, with the skew its hosts'
    agents would report. Project `default` is created first so the test holds its read token."""

    def __init__(self, store_url: str, **kw: Any) -> None:
        super().__init__(store_url, args=("--demo",), **kw)

    def start(self, timeout: float = 60) -> DemoServe:
        super().start(timeout)
        wait_until(
            lambda: self.get("/api/v1/search", q="request_id:req-demo-cart-lost").json()["events"],
            timeout,
            "the demo's story in the store",
        )
        return self


@pytest.fixture(scope="module")
def served_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServe]:
    d = tmp_path_factory.mktemp("served-demo")
    hub = DemoServe(f"sqlite:///{d}/obshub.db", project="default", log_path=d / "hub.log").start()
    yield hub
    hub.stop()


def demo_journey(hub: HubProcess, user: str) -> list[tuple[str, str]]:
    """(request id, entry host) of the user's requests in true order, from the stored data and
    the demo's real clock errors (CLOCK_SKEW_US): what the timeline must find by itself."""
    own = hub.search_all(f"user_id:{user}")
    rids = {e["request_id"] for e in own if "request_id" in e}
    first: dict[str, tuple[int, str]] = {}
    for rid in rids:
        for e in hub.search_all(f"request_id:{rid}"):
            true_t = parse_ts(e["ts"]) - CLOCK_SKEW_US.get(e["host"], 0)
            if rid not in first or true_t < first[rid][0]:
                first[rid] = (true_t, e["host"])
    return [(rid, host) for rid, (_, host) in sorted(first.items(), key=lambda kv: kv[1])]


def true_switches(journey: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """request id -> (previous entry host, its entry host), for each request entering elsewhere."""
    return {rid: (prev, host) for (_, prev), (rid, host) in itertools.pairwise(journey) if host != prev}


@contextlib.contextmanager
def login_client(hub: LiveHub | HubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, timeout=30) as c:
        r = c.post("/login", data={"token": hub.read_token, "next": "/search"}, headers={"Origin": hub.url})
        assert r.status_code == 303, r.text
        yield c


@pytest.fixture
def web(demo_hub: LiveHub) -> Iterator[httpx.Client]:
    """An httpx client holding a web session of the demo hub."""
    with login_client(demo_hub) as c:
        yield c


@pytest.fixture(scope="package")  # not session: its running event loop would break asyncio.run in later packages
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} missing: run scripts/browser.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, demo_hub: LiveHub) -> Iterator[Any]:
    """A logged-in browser tab (logged in through the form, like a person)."""
    yield from _logged_in_tab(browser, demo_hub)


@pytest.fixture
def served_page(browser: Any, served_demo: DemoServe) -> Iterator[Any]:
    """A logged-in browser tab on `obshub serve --demo`."""
    yield from _logged_in_tab(browser, served_demo)


def _logged_in_tab(browser: Any, hub: LiveHub | HubProcess) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=hub.url)
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    # CSP violations, script errors and failed asset loads: a page must have none. (Pages that
    # answer 4xx on purpose, like a query with a syntax error, are documents, not assets.)
    problems: list[str] = []

    def on_console(m: Any) -> None:
        if m.type == "error" and not m.text.startswith("Failed to load resource"):
            problems.append(f"console: {m.text}")

    def on_response(r: Any) -> None:
        if r.status >= 400 and r.request.resource_type != "document":
            problems.append(f"{r.status} {r.request.resource_type} {r.url}")

    pg.on("console", on_console)
    pg.on("response", on_response)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.goto("/search")
    assert "/login" in pg.url
    pg.get_by_label("Read token").fill(hub.read_token)
    pg.get_by_role("button", name="Log in").click()
    pg.wait_for_url("**/search**")
    yield pg
    ctx.close()
    assert problems == []


def shot(page: Any, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

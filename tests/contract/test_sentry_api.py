"""The unmodified sentry-sdk against a live hub, on every backend; hand-made envelopes for the
malformed cases the SDK never sends."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
import uuid
import zlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import brotli
import httpx
import orjson
import pytest

from tests.hubproc import LiveHub, metric
from tests.opensearch_node import drop_prefix


def dsn(h: LiveHub, creds: dict | None = None) -> str:  # type: ignore[type-arg]
    return str((creds or h.creds)["dsn"]).replace(":0/", f":{h.port}/")


def run_sdk(h: LiveHub, body: str, compression: str = "br", creds: dict | None = None) -> None:  # type: ignore[type-arg]
    """Run sentry-sdk in a fresh interpreter, as an app would."""
    code = (
        textwrap.dedent(f"""
        import sentry_sdk
        sentry_sdk.init(dsn={dsn(h, creds)!r}, release="shop@1.4.2", environment="prod",
                        _experiments={{"transport_compression_algo": {compression!r}}})
    """)
        + textwrap.dedent(body)
        + "\nsentry_sdk.flush(5)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def errors(h: LiveHub) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in h.search_all(**{"from": "-1h"}) if e["kind"] == "error"]


@pytest.mark.parametrize("compression", ["br", "gzip"])
def test_sdk_exceptions_messages_chains(hub: LiveHub, compression: str) -> None:
    run_sdk(
        hub,
        """
        sentry_sdk.set_user({"id": "u-42", "email": "bob@example.com"})
        sentry_sdk.set_tag("request_id", "req-sentry-1")
        sentry_sdk.add_breadcrumb(category="ui", message="clicked checkout")
        def checkout(n):
            cart = {}
            return cart["item-" + str(n)]
        for i in range(3):
            try:
                checkout(i)
            except KeyError:
                sentry_sdk.capture_exception()
        sentry_sdk.capture_message("payment provider slow", level="warning")
        try:
            try:
                1 / 0
            except ZeroDivisionError as e:
                raise ValueError("could not compute total") from e
        except ValueError:
            sentry_sdk.capture_exception()
    """,
        compression,
    )
    evs = errors(hub)
    assert len(evs) == 5
    for e in evs:
        assert e["user_id"] == "u-42" and e["request_id"] == "req-sentry-1"
        assert e["release"] == "shop@1.4.2" and e["env"] == "prod"
        assert len(e["trace_id"]) == 32  # the SDK's propagation context: joins logs of the trace
    chained = next(e for e in evs if e["message"].startswith("ValueError"))
    assert chained["error"]["chain"][0]["type"] == "ZeroDivisionError"
    assert any(b.get("message") == "clicked checkout" for b in chained["error"]["breadcrumbs"])
    msg = next(e for e in evs if e["message"] == "payment provider slow")
    assert msg["level"] == "warning"
    groups = hub.get("/api/v1/errors").json()["groups"]
    by_title = {g["title"].split(":")[0]: g for g in groups}
    assert len(groups) == 3  # three KeyErrors from one call site are one group
    assert by_title["KeyError"]["count"] == 3 and by_title["KeyError"]["users"] == 1
    assert by_title["KeyError"]["culprit"].endswith("in checkout")


def test_sdk_custom_fingerprint(hub: LiveHub) -> None:
    run_sdk(
        hub,
        """
        for tenant in ("a", "b", "a"):
            with sentry_sdk.new_scope() as scope:
                scope.fingerprint = ["{{ default }}", tenant]
                try:
                    raise RuntimeError("boom")
                except RuntimeError:
                    sentry_sdk.capture_exception()
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = ["database-unavailable"]
            sentry_sdk.capture_message("db down on host 1")
            sentry_sdk.capture_message("db down on host 2")
    """,
    )
    groups = {g["id"]: g for g in hub.get("/api/v1/errors").json()["groups"]}
    counts = sorted(g["count"] for g in groups.values())
    assert counts == [1, 2, 2]  # tenant a (2), tenant b (1), the explicit fingerprint (2)


def test_sdk_in_process_and_sessions_are_not_errors(hub: LiveHub) -> None:
    import sentry_sdk

    # No auto-integrations in-process: they monkeypatch httpx and http.client for the whole
    # test process (and stay patched), which would rewrite other tests' headers. The
    # subprocess tests above run the SDK with its defaults.
    sentry_sdk.init(
        dsn=dsn(hub),
        release="app@2",
        send_client_reports=True,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    try:
        sentry_sdk.get_isolation_scope().start_session()
        try:
            raise LookupError("in-process failure")
        except LookupError:
            event_id = sentry_sdk.capture_exception()
        sentry_sdk.get_isolation_scope().end_session()
        sentry_sdk.flush(5)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init(dsn=None, default_integrations=False, auto_enabling_integrations=False)
        # the SDK's urllib3 pool is not closed by close(); collect it here, not in a later test
        import gc
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    evs = errors(hub)
    assert [e["id"] for e in evs] == [event_id]  # the session envelope produced no error
    # A client report and a transaction: accepted (200), skipped.
    env = b"\n".join(
        [
            orjson.dumps({"sent_at": "2026-11-23T10:00:00Z"}),
            orjson.dumps({"type": "client_report"}),
            orjson.dumps(
                {"timestamp": 1, "discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": 1}]}
            ),
            orjson.dumps({"type": "transaction"}),
            orjson.dumps({"type": "transaction", "spans": []}),
        ]
    )
    r = httpx.post(
        f"{hub.url}/api/{hub.project_id}/envelope/?sentry_key={hub.creds['dsn'].split('//')[1].split('@')[0]}",
        content=env,
    )
    assert r.status_code == 200
    assert len(errors(hub)) == 1


def _key(h: LiveHub) -> str:
    return str(h.creds["dsn"]).split("//")[1].split("@")[0]


def _event(event_id: str, msg: str = "boom") -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "level": "error",
            "platform": "python",
            "exception": {"values": [{"type": "RuntimeError", "value": msg}]},
        }
    )


def _post(h: LiveHub, body: bytes, key: str | None = None, path: str = "envelope", **headers: str) -> httpx.Response:
    k = key or _key(h)
    return httpx.post(
        f"{h.url}/api/{h.project_id}/{path}/",
        content=body,
        timeout=30,
        headers={"X-Sentry-Auth": f"Sentry sentry_key={k}, sentry_version=7", **headers},
    )


def test_auth_paths(hub: LiveHub) -> None:
    ev = _event("a" * 32)
    env = orjson.dumps({"event_id": "a" * 32}) + b"\n" + orjson.dumps({"type": "event"}) + b"\n" + ev
    r = _post(hub, env, key="wrong")
    # Relay's shape, and how to authenticate (RFC 9110: every 401 says so; a Bearer token works too)
    assert r.status_code == 401 and list(r.json()) == ["detail"] and r.headers["www-authenticate"] == "Bearer"
    other = hub.new_project("other")
    other_key = other["dsn"].split("//")[1].split("@")[0]
    assert _post(hub, env, key=other_key).status_code == 403  # valid key, other project
    # the DSN in the envelope header authenticates too (browser SDKs with tunnels do this)
    env_dsn = (
        orjson.dumps({"event_id": "b" * 32, "dsn": dsn(hub)})
        + b"\n"
        + orjson.dumps({"type": "event"})
        + b"\n"
        + _event("b" * 32)
    )
    assert httpx.post(f"{hub.url}/api/{hub.project_id}/envelope/", content=env_dsn).json() == {"id": "b" * 32}
    r = httpx.post(f"{hub.url}/api/{hub.project_id}/store/?sentry_key={_key(hub)}", content=_event("c" * 32))
    assert r.status_code == 200 and r.json() == {"id": "c" * 32}
    pre = httpx.options(f"{hub.url}/api/{hub.project_id}/envelope/")
    assert pre.status_code == 200 and "x-sentry-auth" in pre.headers["access-control-allow-headers"].lower()
    assert {e["id"] for e in errors(hub)} == {"b" * 32, "c" * 32}


def test_bad_envelopes_are_4xx_and_valid_items_are_kept(hub: LiveHub) -> None:
    good = _event("1" * 32)
    head = orjson.dumps({"event_id": "1" * 32})
    # item 1 valid (explicit length), item 2 truncated: item 1 is kept, answer is 400
    body = (
        head
        + b"\n"
        + orjson.dumps({"type": "event", "length": len(good)})
        + b"\n"
        + good
        + b"\n"
        + orjson.dumps({"type": "event", "length": 500})
        + b"\n"
        + b'{"partial'
    )
    r = _post(hub, body)
    assert r.status_code == 400 and "truncated" in r.json()["detail"]
    # a length that does not land on a newline
    r = _post(hub, head + b"\n" + orjson.dumps({"type": "event", "length": 5}) + b"\n" + good)
    assert r.status_code == 400 and "does not end at a newline" in r.json()["detail"]
    # invalid JSON payload next to a valid one (newline-framed)
    r = _post(
        hub,
        head
        + b"\n"
        + orjson.dumps({"type": "event"})
        + b"\n{nope\n"
        + orjson.dumps({"type": "event"})
        + b"\n"
        + _event("2" * 32),
    )
    assert r.status_code == 400 and r.json()["stored"] == 1
    assert _post(hub, b"not json at all\n").status_code == 400
    assert _post(hub, head + b"\n[1,2]\n{}").status_code == 400
    # compression: broken gzip is 400, unknown encoding 415, all supported ones work
    env3 = head + b"\n" + orjson.dumps({"type": "event"}) + b"\n" + _event("3" * 32)
    assert _post(hub, gzip.compress(env3)[:20], **{"Content-Encoding": "gzip"}).status_code == 400
    assert _post(hub, env3, **{"Content-Encoding": "compress"}).status_code == 415
    for i, (enc, fn) in enumerate([("gzip", gzip.compress), ("deflate", zlib.compress), ("br", brotli.compress)]):
        eid = str(4 + i) * 32
        env = orjson.dumps({"event_id": eid}) + b"\n" + orjson.dumps({"type": "event"}) + b"\n" + _event(eid)
        assert _post(hub, fn(env), **{"Content-Encoding": enc}).json() == {"id": eid}, enc
    assert httpx.get(f"{hub.url}/healthz").status_code == 200
    ids = {e["id"] for e in errors(hub)}
    assert ids == {"1" * 32, "2" * 32, "4" * 32, "5" * 32, "6" * 32}


def test_empty_envelope_is_400(hub: LiveHub) -> None:
    """As Relay answers: an empty body (or only blank lines) is a client error, not an empty
    success."""
    for body in (b"", b"\n", b"\n\n  \r\n", b" "):
        r = _post(hub, body)
        assert r.status_code == 400 and r.json()["detail"].startswith("empty envelope"), (body, r.text)
        assert r.headers["access-control-allow-origin"] == "*"  # browser SDKs can read the answer
        r = _post(hub, gzip.compress(body), **{"Content-Encoding": "gzip"})  # empty once decoded
        assert r.status_code == 400 and r.json()["detail"].startswith("empty envelope"), (body, r.text)
        r = _post(hub, body, path="store")
        assert r.status_code == 400 and r.json()["detail"] == "empty request body", (body, r.text)
        assert _post(hub, body, key="wrong").status_code == 401  # auth is still checked first
    assert errors(hub) == []


def test_huge_envelope_is_413(store_url: str) -> None:
    h = LiveHub(store_url, max_body_bytes=256 * 1024, max_wire_bytes=256 * 1024).start()
    try:
        big = orjson.dumps({"event_id": "9" * 32, "message": "x" * 300_000})
        env = b"{}\n" + orjson.dumps({"type": "event"}) + b"\n" + big
        assert _post(h, env).status_code == 413
        bomb = gzip.compress(b"{}\n" + orjson.dumps({"type": "event"}) + b"\n" + b" " * (5 << 20))
        r = _post(h, bomb, **{"Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decoded" in r.json()["detail"]
    finally:
        h.stop()


def test_errors_join_logs_of_the_same_request(hub: LiveHub) -> None:
    # logs from two hosts with request_id + trace_id, and a Sentry error tagged with the same
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    hub.ingest(
        [
            {"message": "POST /checkout", "host": "web-1", "request_id": "req-j", "trace_id": trace},
            {"message": "charge card", "host": "web-2", "request_id": "req-j", "trace_id": trace},
        ]
    )
    run_sdk(
        hub,
        f"""
        scope = sentry_sdk.get_current_scope()
        sentry_sdk.set_tag("request_id", "req-j")
        scope.set_context("trace", {{"trace_id": "{trace}", "span_id": "00f067aa0ba902b7"}})
        sentry_sdk.capture_message("card declined", level="error")
    """,
    )
    tr = hub.get("/api/v1/trace/req-j").json()
    assert len(tr["events"]) == 3 and tr["error_count"] == 1
    (g,) = hub.get("/api/v1/errors").json()["groups"]
    detail = hub.get(f"/api/v1/errors/{g['id']}").json()
    assert detail["occurrences"][0]["request_id"] == "req-j"
    assert detail["latest_event"]["message"] == "card declined"


def _envelope(*events: bytes, event_id: str | None = None) -> bytes:
    head = orjson.dumps({"event_id": event_id} if event_id else {})
    return head + b"".join(b"\n" + orjson.dumps({"type": "event"}) + b"\n" + ev for ev in events)


def _unstorable(event_id: str) -> bytes:
    """Valid for the hub, refused by OpenSearch: a 40,000-byte keyword is past Lucene's term
    limit (as in test_ingest_api.py); SQLite stores it."""
    return orjson.dumps(
        {
            "event_id": event_id,
            "level": "error",
            "tags": {"service": "s" * 40_000},
            "exception": {"values": [{"type": "RuntimeError", "value": "too long to index"}]},
        }
    )


def test_an_event_the_store_refuses_is_a_400_never_a_silent_200(
    hub: LiveHub, store_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    refuses = store_url.startswith("opensearch")
    r = _post(hub, _envelope(_unstorable("a" * 32), event_id="a" * 32))
    if not refuses:
        assert r.status_code == 200 and r.json() == {"id": "a" * 32}
        assert metric(hub, "obshub_ingest_events_total", protocol="sentry", outcome="rejected") == 0
        return
    assert r.status_code == 400, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    body = r.json()
    assert (
        body["detail"].startswith("item 1 (event): store refused the event: ")
        and body["detail"] != "item 1 (event): store refused the event: "
    )
    assert (body["id"], body["stored"]) == ("a" * 32, 0)
    r = _post(hub, _unstorable("b" * 32), path="store")  # /store/: its one event
    assert r.status_code == 400 and r.json()["detail"].startswith("item 1 (event): store refused the event: ")
    # Two events, the second refused: the first is stored and the answer says which one was not.
    r = _post(hub, _envelope(_event("c" * 32), _unstorable("d" * 32)))
    assert r.status_code == 400 and r.json()["stored"] == 1
    assert r.json()["detail"].startswith("item 2 (event): store refused the event: ")
    assert [e["id"] for e in errors(hub)] == ["c" * 32]
    assert metric(hub, "obshub_ingest_events_total", protocol="sentry", outcome="rejected") == 3
    assert metric(hub, "obshub_ingest_rejected_total", protocol="sentry", reason="store") == 3
    assert metric(hub, "obshub_ingest_events_total", protocol="sentry", outcome="accepted") == 1
    assert metric(hub, "obshub_ingest_requests_total", protocol="sentry", status="400") == 3
    log = "".join(capfd.readouterr())  # the hub's structlog lines (this process: a LiveHub)
    assert log.count("store refused events") == 3 and "protocol=sentry" in log


def _relay_backoff(r: httpx.Response, status: int, detail: str, retry_after: int) -> None:
    """A store that cannot take the events answered as Relay would: Sentry SDKs (browser ones
    too, through CORS) read Retry-After / X-Sentry-Rate-Limits and pause sending."""
    assert r.status_code == status, r.text
    assert list(r.json()) == ["detail"] and r.json()["detail"].startswith(detail), r.text
    assert r.headers["retry-after"] == str(retry_after)
    assert r.headers["x-sentry-rate-limits"] == f"{retry_after}::organization"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "X-Sentry-Rate-Limits" in r.headers["access-control-expose-headers"]


def test_store_down_on_sentry_routes_is_a_relay_503(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    assert _post(h, _envelope(_event("1" * 32))).status_code == 200
    h.store.close()  # the store goes away under a running hub
    for path in ("envelope", "store"):
        body = _envelope(_event("2" * 32)) if path == "envelope" else _event("2" * 32)
        _relay_backoff(_post(h, body, path=path), 503, "store unavailable: ", 5)
    # Counted and logged as on every other route (app.py's outage bookkeeping).
    assert metric(h, "obshub_store_up") == 0
    assert metric(h, "obshub_ingest_requests_total", protocol="sentry", status="503") == 2
    assert h.app.state.hub.store_outage.failing
    h.store.open()
    assert _post(h, _envelope(_event("2" * 32))).json() == {"id": "2" * 32}
    assert not h.app.state.hub.store_outage.failing
    assert {e["id"] for e in errors(h)} == {"1" * 32, "2" * 32}


@pytest.fixture
def os_hub(opensearch_url: str) -> Iterator[tuple[LiveHub, str]]:
    url = f"{opensearch_url}{'&' if '?' in opensearch_url else '?'}prefix=s{uuid.uuid4().hex[:10]}"
    h = LiveHub(url).start()
    yield h, url
    h.stop()
    drop_prefix(url)


@pytest.mark.opensearch
def test_store_pushback_on_sentry_routes_is_a_relay_429(os_hub: tuple[LiveHub, str]) -> None:
    """OpenSearch refusing writes (the block a cluster past its flood-stage disk watermark
    sets, set by hand on this test's indices)."""
    h, url = os_hub
    parts = urlsplit(url)
    prefix = url.split("prefix=")[1].split("&")[0]
    settings = f"http://{parts.hostname}:{parts.port}/.ds-{prefix}-events-*/_settings"
    assert _post(h, _envelope(_event("1" * 32))).status_code == 200
    try:
        r = httpx.put(settings, json={"index.blocks.read_only_allow_delete": True})
        assert r.status_code == 200, r.text
        _relay_backoff(_post(h, _envelope(_event("2" * 32))), 429, "store overloaded: OpenSearch refuses writes", 30)
    finally:
        assert httpx.put(settings, json={"index.blocks.read_only_allow_delete": None}).status_code == 200
    assert metric(h, "obshub_ingest_requests_total", protocol="sentry", status="429") == 1
    assert h.app.state.hub.store_pushback.failing
    assert _post(h, _envelope(_event("2" * 32))).json() == {"id": "2" * 32}  # the SDK's resend
    assert not h.app.state.hub.store_pushback.failing
    assert {e["id"] for e in errors(h)} == {"1" * 32, "2" * 32}

"""Issue 23, part "web": sessions end at logout on every replica, failed logins are throttled per
client, /readyz tells only a read token which store and why, no link or redirect is built from
an untrusted Host, and a client that goes away mid-request costs one log line, not a traceback
(docs/security.md). Real hubs on 127.0.0.1, both stores where the store is involved.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from obshub.auth import hash_token, revoke_token
from obshub.errors import ConfigError
from obshub.events import now_us
from obshub.settings import load_settings
from obshub.store import open_store
from tests.factories import event
from tests.hubproc import HubProcess, LiveHub, wait_until
from tests.web.conftest import login_client

COOKIE = "obshub_session"


def _page(url: str, cookie: str, path: str = "/search") -> httpx.Response:
    """A page load carrying `cookie` as its session cookie (a copied cookie, as a thief has it)."""
    return httpx.get(f"{url}{path}", headers={"Cookie": f"{COOKIE}={cookie}"}, timeout=30)


def _logged_in(r: httpx.Response) -> bool:
    if r.status_code == 303 and r.headers["location"].startswith("/login"):
        return False
    assert r.status_code == 200, (r.status_code, r.text[:200])
    return True


# -- sessions -----------------------------------------------------------------------------------


@pytest.fixture
def replicas(store_url: str) -> Iterator[tuple[LiveHub, LiveHub]]:
    """Two hubs on one store, as behind a load balancer (no OBSHUB_SECRET_KEY set)."""
    a = LiveHub(store_url, project="a", token_cache_s=0.5).start()
    b = LiveHub(store_url, project="b", token_cache_s=0.5).start()
    yield a, b
    a.stop()
    b.stop()


def test_a_session_works_on_every_replica_and_logout_ends_it_everywhere(replicas: tuple[LiveHub, LiveHub]) -> None:
    a, b = replicas
    with login_client(a) as web:
        cookie = web.cookies[COOKIE]
        assert _logged_in(_page(b.url, cookie))  # one key for every hub on the store
        assert _logged_in(_page(a.url, cookie))  # b's check is cached now: it must still learn of the logout
        r = web.post("/logout", headers={"Origin": a.url})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert COOKIE not in web.cookies
    assert not _logged_in(_page(a.url, cookie))  # the replica that logged out: at once
    wait_until(lambda: not _logged_in(_page(b.url, cookie)), 5, "the other replica to refuse the ended session")
    time.sleep(1.0)  # past every cache: it stays ended
    assert not _logged_in(_page(a.url, cookie)) and not _logged_in(_page(b.url, cookie))


def test_logout_ends_only_its_own_session(replicas: tuple[LiveHub, LiveHub]) -> None:
    a, _ = replicas
    with login_client(a) as mine, login_client(a) as colleague:  # a team shares a read token
        assert mine.post("/logout", headers={"Origin": a.url}).status_code == 303
        assert colleague.get("/search").status_code == 200
        assert not _logged_in(mine.get("/search"))


def test_a_session_survives_a_restart_of_the_hub(store_url: str) -> None:
    first = LiveHub(store_url, project="a").start()
    try:
        with login_client(first) as web:
            cookie = web.cookies[COOKIE]
    finally:
        first.stop()
    second = LiveHub(store_url, project="b").start()
    try:
        assert _logged_in(_page(second.url, cookie))
    finally:
        second.stop()


def test_revoking_the_token_ends_its_sessions(store_url: str) -> None:
    h = LiveHub(store_url, token_cache_s=0.5).start()
    try:
        with login_client(h) as web:
            assert web.get("/search").status_code == 200
            revoke_token(h.store, h.read_token)
            wait_until(lambda: not _logged_in(web.get("/search")), 3, "the revoked token's session to end")
            r = web.post("/login", data={"token": h.read_token}, headers={"Origin": h.url})
            assert r.status_code == 401  # and it cannot log in again
    finally:
        h.stop()


def test_logout_with_the_store_down_says_so_and_keeps_the_session(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    with login_client(h) as web:
        cookie = web.cookies[COOKIE]
        h.store.close()
        r = web.post("/logout", headers={"Origin": h.url})
        assert r.status_code == 503 and r.headers["retry-after"] and "Not logged out" in r.text
        h.store.open()
        assert _logged_in(_page(h.url, cookie))  # not silently "logged out" with a live cookie around
        assert web.post("/logout", headers={"Origin": h.url}).status_code == 303
        assert not _logged_in(_page(h.url, cookie))


def test_a_cookie_without_a_session_id_is_refused(sqlite_hub: LiveHub) -> None:
    """A cookie made before logout could end sessions (no session id) cannot be ended: refused."""
    h = sqlite_hub
    key = h.app.state.web.key
    old = URLSafeTimedSerializer(key, salt="obshub.web.session").dumps(
        {"h": hash_token(h.read_token), "c": "csrf", "t": int(time.time())}
    )
    assert not _logged_in(_page(h.url, old))
    forged = URLSafeTimedSerializer("some other key", salt="obshub.web.session").dumps(
        {"h": hash_token(h.read_token), "s": "x", "c": "csrf", "t": int(time.time())}
    )
    assert not _logged_in(_page(h.url, forged))


def test_the_store_keeps_one_shared_key_and_forgets_expired_ended_sessions(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)  # two hubs' stores
    first.open()
    second.open()
    try:
        assert first.shared_secret("web_session", "key-1") == "key-1"
        assert second.shared_secret("web_session", "key-2") == "key-1"  # the first one stays
        assert first.shared_secret("other", "key-3") == "key-3"
        now = now_us()
        first.end_session("expired", now - 1)
        assert second.session_ended("expired") and not second.session_ended("never-ended")
        # Each logout forgets what expired (OpenSearch: once its search sees the doc, ~1 s).
        n = iter(range(1_000))

        def another_logout_purged() -> bool:
            second.end_session(f"s{next(n)}", now + 3_600_000_000)
            return not first.session_ended("expired")

        wait_until(another_logout_purged, 10, "the expired ended session to be purged", every=0.3)
        assert first.session_ended("s0")
    finally:
        first.close()
        second.close()


# -- login throttling ---------------------------------------------------------------------------


def _login(h: LiveHub, token: str, client: str) -> httpx.Response:
    """A login from `client`: uvicorn takes the client address from X-Forwarded-For when the
    connection comes from a trusted proxy (127.0.0.1 by default), as behind nginx."""
    return httpx.post(
        f"{h.url}/login",
        data={"token": token, "next": "/search"},
        headers={"Origin": h.url, "X-Forwarded-For": client},
        timeout=30,
    )


@pytest.fixture
def throttled_hub(tmp_path: Path) -> Iterator[LiveHub]:
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", login_backoff_s=1).start()
    yield h
    h.stop()


def test_failed_logins_block_the_client_with_a_doubling_backoff(throttled_hub: LiveHub) -> None:
    h = throttled_hub
    for _ in range(5):
        assert _login(h, "obr_wrong", "203.0.113.7").status_code == 401
    r = _login(h, h.read_token, "203.0.113.7")  # even the right token: not checked while blocked
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert "Too many failed logins from your address (5 in a row). Try again in 1 second." in r.text
    assert "set-cookie" not in r.headers
    assert _login(h, h.read_token, "203.0.113.8").status_code == 303  # another client is not affected
    time.sleep(1.1)
    assert _login(h, "obr_wrong", "203.0.113.7").status_code == 401  # one more try, which fails:
    r = _login(h, h.read_token, "203.0.113.7")
    assert r.status_code == 429 and r.headers["retry-after"] == "2"  # the wait doubles
    time.sleep(2.1)
    assert _login(h, h.read_token, "203.0.113.7").status_code == 303  # a success forgets the failures
    for _ in range(4):
        assert _login(h, "obr_wrong", "203.0.113.7").status_code == 401
    assert _login(h, h.read_token, "203.0.113.7").status_code == 303


def test_concurrent_guesses_do_not_slip_past_the_limit(throttled_hub: LiveHub) -> None:
    h = throttled_hub
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(_login(h, "obr_wrong", "198.51.100.1").status_code))
        for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [401] * 5 + [429] * 15


def test_logins_during_a_store_outage_say_so_and_do_not_count_as_failures(throttled_hub: LiveHub) -> None:
    h = throttled_hub
    h.store.close()
    try:
        for _ in range(7):
            r = _login(h, h.read_token, "203.0.113.20")
            assert r.status_code == 503 and r.headers["retry-after"], r.text[:200]
            assert r.headers["content-type"].startswith("text/html") and "The store is not answering" in r.text
    finally:
        h.store.open()
    assert _login(h, h.read_token, "203.0.113.20").status_code == 303  # not blocked by the outage


def test_throttling_can_be_turned_off_and_bad_settings_stop_the_start(tmp_path: Path) -> None:
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", login_max_failures=0).start()
    try:
        assert all(_login(h, "obr_wrong", "203.0.113.9").status_code == 401 for _ in range(8))
        assert _login(h, h.read_token, "203.0.113.9").status_code == 303
    finally:
        h.stop()
    for bad in ("-1", "nan", "7200", "soon"):
        with pytest.raises(ConfigError, match="LOGIN_BACKOFF_S"):
            load_settings({"OBSHUB_LOGIN_BACKOFF_S": bad})
    with pytest.raises(ConfigError, match="LOGIN_MAX_FAILURES"):
        load_settings({"OBSHUB_LOGIN_MAX_FAILURES": "-1"})


def test_the_throttle_remembers_a_bounded_number_of_clients() -> None:
    from obshub.web.throttle import MAX_CLIENTS, LoginThrottle, client_key

    throttle = LoginThrottle(max_failures=5, backoff_s=30)
    for i in range(MAX_CLIENTS * 3):
        throttle.attempt(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", now=float(i))
    assert len(throttle) == MAX_CLIENTS
    # The most recent clients are the ones kept.
    last = MAX_CLIENTS * 3 - 1
    assert throttle.attempt(f"10.{last >> 16 & 255}.{last >> 8 & 255}.{last & 255}", now=last + 1.0).failures == 2
    # An IPv6 client is its /64 (one host's usual share); an IPv4-mapped one its IPv4 address.
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1") == "192.0.2.1"


# -- /readyz ------------------------------------------------------------------------------------


def test_readyz_tells_only_a_read_token_which_store_and_why(hub: LiveHub) -> None:
    url = f"{hub.url}/readyz"
    for headers in ({}, {"Authorization": "Bearer obr_wrong"}, {"Authorization": f"Bearer {hub.ingest_token}"}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 200 and r.json() == {"status": "ready"}, headers
    read = {"Authorization": f"Bearer {hub.read_token}"}
    detailed = httpx.get(url, headers=read).json()
    assert detailed["status"] == "ready" and detailed["store"].split(":")[0] in ("sqlite", "opensearch")
    hub.store.close()
    try:
        r = httpx.get(url)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json() == {"error": "store not ready"}
        r = httpx.get(url, headers=read)  # the token was checked a moment ago: cached
        assert r.status_code == 503 and r.json()["error"].startswith("store not ready: ")
        assert len(r.json()["error"]) > len("store not ready: ")
    finally:
        hub.store.open()
    assert httpx.get(url).status_code == 200


# -- Host and public_url ------------------------------------------------------------------------


def test_no_redirect_points_at_the_host_a_request_names(tmp_path: Path) -> None:
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", public_url="https://obshub.example.com").start()
    try:
        for path in ("/search/", "/static", "/api/v1/search/"):
            for host in ("evil.example", f"evil.example:{h.port}"):
                r = httpx.get(f"{h.url}{path}", headers={"Host": host})
                assert r.is_redirect, (path, r.status_code)
                location = r.headers["location"]
                assert "evil" not in location and location.startswith("https://obshub.example.com/"), location
            # A trusted name keeps its own address (the hub's port on loopback).
            r = httpx.get(f"{h.url}{path}", headers={"Host": f"localhost:{h.port}"})
            assert r.headers["location"].startswith(f"http://localhost:{h.port}/")
    finally:
        h.stop()


def test_browser_forms_are_accepted_only_from_the_hubs_own_origin(tmp_path: Path) -> None:
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", public_url="https://obshub.example.com").start()
    try:

        def login(host: str, origin: str) -> httpx.Response:
            return httpx.post(f"{h.url}/login", data={"token": h.read_token}, headers={"Host": host, "Origin": origin})

        # DNS rebinding: a page of evil.example whose name now points at the hub.
        r = login(f"evil.example:{h.port}", f"http://evil.example:{h.port}")
        assert r.status_code == 403 and "open this hub at https://obshub.example.com" in r.text
        # A proxy that passes the public origin but not the Host: the public origin is the hub's.
        assert login(f"127.0.0.1:{h.port}", "https://obshub.example.com").status_code == 303
        assert login("obshub.example.com", "https://obshub.example.com").status_code == 303
        assert login(f"localhost:{h.port}", f"http://localhost:{h.port}").status_code == 303
        assert login("obshub.example.com", "https://other.example.com").status_code == 403
    finally:
        h.stop()


def test_make_run_defaults_keep_loopback_names_working(sqlite_hub: LiveHub) -> None:
    """No public_url, bound to 127.0.0.1 (`make run`): 127.0.0.1, localhost and [::1] at the
    hub's port are all the hub."""
    h = sqlite_hub
    for host in (f"127.0.0.1:{h.port}", f"localhost:{h.port}", f"[::1]:{h.port}"):
        r = httpx.post(
            f"{h.url}/login", data={"token": h.read_token}, headers={"Host": host, "Origin": f"http://{host}"}
        )
        assert r.status_code == 303, host
    r = httpx.post(
        f"{h.url}/login",
        data={"token": h.read_token},
        headers={"Host": "10.1.2.3:8480", "Origin": "http://10.1.2.3:8480"},
    )
    assert r.status_code == 403 and f"open this hub at http://127.0.0.1:{h.port}" in r.text


# -- one line per client gone mid-request -------------------------------------------------------


def _send_and_vanish(port: int, request: bytes, read: int = 0, linger_s: float = 0.3) -> None:
    """A client that sends `request` (a body shorter than it announced, or a whole request),
    reads `read` bytes of the answer if asked, and closes the connection."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        if read:
            s.settimeout(10)
            assert s.recv(read)
        time.sleep(linger_s)  # the hub is waiting for the rest of the body, or streaming


def test_a_client_gone_mid_request_costs_one_log_line(tmp_path: Path) -> None:
    log = tmp_path / "hub.log"
    h = HubProcess(f"sqlite:///{tmp_path}/obshub.db", log_path=log).start()
    try:
        assert h.ingest([event(message="x" * 1000) for _ in range(3000)]).status_code == 200  # ~3 MB to export
        with login_client(h) as web:
            cookie = web.cookies[COOKIE]
        head = "Host: 127.0.0.1\r\nContent-Length: 100000\r\n"
        # Mid-body: an agent killed mid-upload, a login form cut off.
        _send_and_vanish(
            h.port,
            f"POST /api/v1/ingest HTTP/1.1\r\n{head}Authorization: Bearer {h.ingest_token}\r\n\r\n".encode()
            + b'{"message": "half a batch"}\n' * 20,
        )
        _send_and_vanish(h.port, f"POST /login HTTP/1.1\r\n{head}\r\ntoken=obr_".encode())
        # Mid-stream: an export and a live tail the client stops reading.
        _send_and_vanish(
            h.port,
            f"GET /api/v1/export?from=-1h HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {h.read_token}\r\n\r\n".encode(),
            read=1000,
            linger_s=1.0,
        )
        _send_and_vanish(
            h.port,
            f"GET /tail/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Cookie: {COOKIE}={cookie}\r\n\r\n".encode(),
            read=10,
            linger_s=2.5,  # the stream writes every second: it meets the closed connection
        )
        # 4xx answers: each is the client's problem, not a log line.
        assert h.get("/api/v1/search", q="(((").status_code == 400
        assert h.ingest(b"x", token="obi_wrong").status_code == 401
        assert httpx.put(f"{h.url}/api/v1/search").status_code == 405
        assert h.ingest([event()]).status_code == 200  # the hub is fine
    finally:
        h.stop()
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text
    gone = [ln for ln in text.splitlines() if "client disconnected" in ln]
    assert len(gone) == 2, text
    assert "path=/api/v1/ingest" in gone[0] and "path=/login" in gone[1]
    assert all(len(ln) < 200 for ln in text.splitlines()), text

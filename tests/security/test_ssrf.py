"""Uptime checks are no SSRF tool (issue 23): a check defined over the API reaches public
addresses only unless the operator allows networks (`checks_allow_networks`), judged on the
address the probe connects to (resolved once: DNS rebinding), a project has at most
`checks_max_per_project` of them, and a result never quotes what the target answered. Real
servers on 127.0.0.1 (and 127.0.0.2), real hubs on both stores."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from obshub.errors import ConfigError
from obshub.settings import load_settings
from obshub.uptime.config import parse_check
from obshub.uptime.network import NetworkPolicy
from obshub.uptime.probes import probe
from tests.hubproc import HubProcess, LiveHub

SECRET = "s3cret-of-the-internal-page"
DEFAULT = NetworkPolicy()  # what a hub without checks_* settings applies to API checks


class _Secret(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the stdlib's name
        self.server.hits += 1  # type: ignore[attr-defined]
        self.server.hosts.append(self.headers["Host"])  # type: ignore[attr-defined]
        body = f"internal page: {SECRET}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        pass


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Server:
    """An internal page on `host`, counting the requests it gets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        server = _V6Server if ":" in host else ThreadingHTTPServer
        self.httpd = server((host, port), _Secret)
        self.httpd.hits = 0  # type: ignore[attr-defined]
        self.httpd.hosts = []  # type: ignore[attr-defined]  (the Host header of each request)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def hits(self) -> int:
        return int(self.httpd.hits)  # type: ignore[attr-defined]

    @property
    def hosts(self) -> list[str]:
        return list(self.httpd.hosts)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def internal() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def post(h: LiveHub | HubProcess, body: dict[str, Any]) -> Any:
    with h.client(h.admin_token) as c:
        return c.post("/api/v1/checks", json=body)


def results(h: LiveHub | HubProcess, name: str, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = h.search_all(f"kind:check name:{name} attrs.up:*")
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("target", "what"),
    [
        ("http://127.0.0.1:{port}/secret", "a loopback address"),
        ("http://[::1]:{port}/secret", "a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/secret", "a loopback address"),
        ("tcp://127.0.0.1:{port}", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("http://10.0.0.1/admin", "a private or reserved address"),
        ("http://192.168.1.1/", "a private or reserved address"),
        ("https://172.16.0.1/", "a private or reserved address"),
        ("http://0.0.0.0:{port}/", "an unspecified or multicast address"),
    ],
)
def test_a_literal_internal_target_is_refused_when_defined(
    hub: LiveHub, internal: Server, target: str, what: str
) -> None:
    """The issue's attack: a check on an internal page with `expect_body`, one guess at a time."""
    body: dict[str, Any] = {"name": "peek", "target": target.format(port=internal.port)}
    if not body["target"].startswith("tcp:"):
        body["expect_body"] = SECRET[:3]
    r = post(hub, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith("target: ") and f" is {what}: " in error and "checks_allow_networks" in error
    assert hub.get("/api/v1/checks").json()["checks"] == []
    assert hub.search_all("kind:check") == []
    assert internal.hits == 0


def test_a_name_is_judged_on_the_address_it_resolves_to_when_probed(hub: LiveHub, internal: Server) -> None:
    """A name is taken when defined (what it resolves to can change) and refused at probe time:
    the probe never connects, and the result says why without the address."""
    r = post(hub, {"name": "peek", "target": f"http://localhost:{internal.port}/secret", "expect_body": SECRET})
    assert r.status_code == 201, r.text
    found = results(hub, "peek")
    assert len(found) == 1, "the scheduler never probed the check"
    ev = found[0]
    assert ev["attrs"]["up"] is False and "latency_ms" not in ev["attrs"] and "status" not in ev["attrs"]
    assert ev["message"] == (
        f"GET http://localhost:{internal.port}/secret: refused by the hub's network policy for checks: localhost "
        "resolves to a loopback address (allowed only in a network listed in the hub's checks_allow_networks setting)"
    )
    assert internal.hits == 0
    assert hub.get("/api/v1/checks").json()["checks"][0]["up"] is False


def test_dns_rebinding_the_probe_connects_to_the_address_it_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to an allowed address when judged and to a refused one a moment later
    (a rebinding DNS server, played by a patched resolver): the probe resolves once and connects to
    the address it judged, never asking the resolver again."""
    allowed = Server("127.0.0.2")
    refused = Server("127.0.0.1", allowed.port)
    real = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host != "rebind.test":
            return real(host, port, *args, **kw)
        asked.append(host)
        return real("127.0.0.2" if len(asked) == 1 else "127.0.0.1", port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    policy = NetworkPolicy(allow=(ip_network("127.0.0.2/32"),))
    try:
        check = parse_check({"name": "t", "target": f"http://rebind.test:{allowed.port}/", "expect_body": SECRET})
        result = probe(check, policy)
        assert result.up, result.message
        assert (allowed.hits, refused.hits, len(asked)) == (1, 0, 1)
        tcp = probe(parse_check({"name": "t", "target": f"tcp://rebind.test:{allowed.port}"}), policy)
        assert not tcp.up and "rebind.test resolves to a loopback address" in tcp.message  # 2nd answer: .1
        assert refused.hits == 0
    finally:
        allowed.close()
        refused.close()


@pytest.mark.parametrize("target", ["http://hang.test:80/", "tcp://hang.test:80"])
def test_a_hung_resolver_is_a_down_result_within_the_probes_timeout(
    monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """A resolver that does not answer (played by a patched getaddrinfo that blocks) held a probe,
    and one of the runner's 16 probe slots, for as long as the resolver liked: the lookup now
    counts against the check's timeout and the result says so."""
    release = threading.Event()
    real = socket.getaddrinfo

    def hung(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host == "hang.test":
            release.wait(30)
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    try:
        started = time.monotonic()
        result = probe(parse_check({"name": "t", "target": target, "timeout_s": 0.5}), None)
        took = time.monotonic() - started
        assert not result.up and "name lookup of hang.test timed out after 0.5 s" in result.message, result.message
        assert took < 5, took
    finally:
        release.set()  # the abandoned lookup thread ends


def test_the_probe_connects_to_the_address_and_speaks_to_the_name(tmp_path: Path) -> None:
    """Connecting to a resolved address must not change what the target sees: `Host` (and, over
    TLS, the server name and the certificate check) carry the target's name and port."""
    loopback = NetworkPolicy(allow=(ip_network("127.0.0.0/8"), ip_network("::1/128")))
    v4, v6 = Server(), Server("::1")
    try:
        r = probe(parse_check({"name": "t", "target": f"http://localhost:{v4.port}/", "expect_body": SECRET}), loopback)
        assert r.up and v4.hosts == [f"localhost:{v4.port}"], (r.message, v4.hosts)
        r = probe(parse_check({"name": "t", "target": f"http://user:pw@[::1]:{v6.port}/"}), loopback)
        assert r.up and v6.hosts == [f"[::1]:{v6.port}"], (r.message, v6.hosts)
    finally:
        v4.close()
        v6.close()
    names: list[str | None] = []
    with _tls_listener(tmp_path, names) as port:
        r = probe(parse_check({"name": "t", "target": f"https://localhost:{port}/"}), loopback)
    assert not r.up and "CERTIFICATE_VERIFY_FAILED" in r.message, r.message  # self-signed: checked, refused
    assert names == ["localhost"]  # the name, not 127.0.0.1, as TLS server name


@contextlib.contextmanager
def _tls_listener(tmp_path: Path, names: list[str | None]) -> Iterator[int]:
    """A TLS port with a self-signed certificate, recording the server name each client asks for."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem, pkey = tmp_path / "tls.pem", tmp_path / "tls.key"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkey.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem, pkey)

    def seen(sock: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        names.append(server_name)

    ctx.sni_callback = seen
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            ctx.wrap_socket(conn, server_side=True).close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        t.join(5)
        srv.close()


def test_private_networks_only_when_the_operator_lists_them() -> None:
    loopback = ip_address("127.0.0.1")
    assert DEFAULT.refusal(ip_address("10.1.2.3")) == "a private or reserved address"
    assert DEFAULT.refusal(ip_address("100.64.0.1")) == "a private or reserved address"  # carrier-grade NAT
    assert DEFAULT.refusal(ip_address("fd00::1")) == "a private or reserved address"
    assert DEFAULT.refusal(ip_address("fec0::1")) == "a private or reserved address"  # site-local
    assert DEFAULT.refusal(ip_address("240.0.0.1")) == "a private or reserved address"
    assert DEFAULT.refusal(ip_address("2002:7f00:1::")) == "a loopback address"  # 6to4 of 127.0.0.1
    assert DEFAULT.refusal(ip_address("224.0.0.1")) is not None
    assert DEFAULT.refusal(ip_address("8.8.8.8")) is None and DEFAULT.refusal(ip_address("2001:4860::8888")) is None
    s = load_settings(
        {"OBSHUB_CHECKS_ALLOW_NETWORKS": "10.0.0.0/8, fd00::/8", "OBSHUB_CHECKS_DENY_NETWORKS": "10.9.0.0/16"}
    )
    policy = NetworkPolicy.of(s)
    assert policy.refusal(ip_address("10.1.2.3")) is None and policy.refusal(ip_address("fd00::1")) is None
    assert policy.refusal(ip_address("10.9.0.1")) == "an address in the hub's checks_deny_networks setting"
    assert policy.refusal(loopback) == "a loopback address"  # only what is listed is opened
    assert NetworkPolicy(deny=(ip_network("8.8.8.0/24"),)).refusal(ip_address("8.8.8.8")) is not None


def _own_address() -> str:
    """A non-loopback IPv4 address of this host: the one toward the outside (no packet is sent:
    a UDP connect picks a route), else one its host name resolves to."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
        s.connect(("192.0.2.1", 9))
        return str(s.getsockname()[0])
    found = {str(i[4][0]) for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    mine = sorted(a for a in found if not ip_address(a).is_loopback)
    assert mine, f"this host has no IPv4 address but loopback ({found}): the rule cannot be shown here"
    return mine[0]


def test_the_hubs_own_addresses_stay_refused_inside_an_allowed_network() -> None:
    own = ip_address(_own_address())
    assert not own.is_loopback
    wide = NetworkPolicy(allow=(ip_network(f"{own}/8", strict=False),))
    assert wide.refusal(own) == "one of the hub's own addresses"
    assert wide.refusal(ip_address(int(own) ^ 1 << 20)) is None  # its neighbours in the network are allowed
    assert NetworkPolicy(allow=(ip_network(f"{own}/32"),)).refusal(own) is None  # listed by itself
    assert DEFAULT.refusal(own) is not None


@pytest.fixture
def babbler() -> Iterator[int]:
    """A TCP port whose service answers anything with a line that is not HTTP (a Redis or SSH
    banner, an internal protocol) and closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    # A whole head (line, blank line): h11 parses it, and quoted the line it refused.
                    conn.sendall(f"+{SECRET} banner of an internal service\r\n\r\n".encode())
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join(5)
    srv.close()


def test_a_result_never_quotes_what_the_target_answered(tmp_path: Path, babbler: int) -> None:
    loopback = NetworkPolicy(allow=(ip_network("127.0.0.0/8"),))
    r = probe(parse_check({"name": "t", "target": f"http://127.0.0.1:{babbler}/"}), loopback)
    assert not r.up and SECRET not in r.message, r.message
    assert r.message == f"GET http://127.0.0.1:{babbler}/: RemoteProtocolError: the answer is not HTTP"
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db", checks_allow_networks="127.0.0.0/8").start()
    try:
        assert post(h, {"name": "redis", "target": f"http://127.0.0.1:{babbler}/"}).status_code == 201
        found = results(h, "redis")
        assert len(found) == 1 and found[0]["attrs"]["up"] is False
        assert SECRET not in orjson.dumps(h.search_all("kind:check")).decode()
        assert SECRET not in h.get("/api/v1/checks").text
    finally:
        h.stop()


def test_checks_per_project_are_capped(store_url: str) -> None:
    h = LiveHub(store_url, checks_max_per_project=2).start()
    try:
        for name in ("a", "b"):
            assert post(h, {"name": name, "target": "http://localhost:9/"}).status_code == 201
        r = post(h, {"name": "c", "target": "http://localhost:9/"})
        assert r.status_code == 409 and r.json()["error"] == (
            "project 'test' has 2 checks, the most the hub's checks_max_per_project setting (2) allows: "
            "delete one first"
        )
        assert post(h, {"name": "a", "target": "http://localhost:9/", "interval_s": 600}).status_code == 200
        with h.client(h.admin_token) as c:
            assert c.delete("/api/v1/checks/a").status_code == 200
        assert post(h, {"name": "c", "target": "http://localhost:9/"}).status_code == 201
        assert sorted(c["name"] for c in h.get("/api/v1/checks").json()["checks"]) == ["b", "c"]
    finally:
        h.stop()


def test_config_file_checks_are_the_operators_own(tmp_path: Path, internal: Server) -> None:
    """`[[checks]]` in the hub config file are not restricted: whoever writes it runs the hub.
    The same target over the API is refused."""
    target = f"http://127.0.0.1:{internal.port}/secret"
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'[[checks]]\nname = "internal"\ntarget = "{target}"\nexpect_body = "{SECRET}"\nproject = "test"\n')
    h = HubProcess(f"sqlite:///{tmp_path}/obshub.db", env={"OBSHUB_CONFIG": str(cfg)}).start()
    try:
        found = results(h, "internal")
        assert len(found) == 1 and found[0]["attrs"]["up"] is True, found
        assert post(h, {"name": "again", "target": target}).status_code == 400
    finally:
        h.stop()


@pytest.mark.parametrize("key", ["OBSHUB_CHECKS_ALLOW_NETWORKS", "OBSHUB_CHECKS_DENY_NETWORKS"])
def test_a_bad_network_setting_stops_the_hub(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key} \(checks_\w+_networks\): '10.0.0.0/33' is not a network"):
        load_settings({key: "10.0.0.0/8,10.0.0.0/33"})

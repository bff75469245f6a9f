"""TLS certificate expiry of https checks: a real HTTPS server on 127.0.0.1 whose certificate,
signed by a CA made here, expires when the test says; the probe reads the verified peer
certificate's notAfter (`tls_expires_at`), the stored result carries it and /metrics exports
`obshub_check_tls_expiry_timestamp_seconds`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from obshub.errors import ConfigError, FieldError
from obshub.uptime.config import config_checks, parse_check
from obshub.uptime.probes import probe
from tests.ci import unavailable
from tests.hubproc import LiveHub

PROMTOOL = "/usr/bin/promtool"

NOT_AFTER = dt.datetime(2031, 3, 14, 15, 9, 26, tzinfo=dt.UTC)  # whole seconds: notAfter has no fraction
NOT_AFTER_US = int(NOT_AFTER.timestamp()) * 1_000_000


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certs(d: Path, not_after: dt.datetime) -> None:
    """ca.pem (a CA) and server.pem/server.key (127.0.0.1 and localhost, signed by it, expiring
    at `not_after`)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("obshub test CA"))
        .issuer_name(_name("obshub test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the stdlib's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        pass


@dataclass(frozen=True)
class Tls:
    url: str  # https://127.0.0.1:<port>
    ca: str  # the CA file that certificate chains to


@pytest.fixture
def https(tmp_path: Path) -> Iterator[Tls]:
    make_certs(tmp_path, NOT_AFTER)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Tls(f"https://127.0.0.1:{server.server_address[1]}", str(tmp_path / "ca.pem"))
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_https_probe_reports_the_certificate_expiry(https: Tls) -> None:
    r = probe(parse_check({"name": "t", "target": f"{https.url}/", "ca": https.ca}), None)
    assert r.up and r.status == 200, r.message
    assert r.tls_expires_at == NOT_AFTER_US
    # Verification stays on: without the CA the same server is refused, and reports no expiry.
    r = probe(parse_check({"name": "t", "target": f"{https.url}/"}), None)
    assert not r.up and "CERTIFICATE_VERIFY_FAILED" in r.message and r.tls_expires_at is None


def test_plain_http_and_tcp_have_no_expiry(https: Tls) -> None:
    port = https.url.rsplit(":", 1)[1]
    assert probe(parse_check({"name": "t", "target": f"tcp://127.0.0.1:{port}"}), None).tls_expires_at is None


def test_ca_is_the_operators_only_and_must_load(tmp_path: Path, https: Tls) -> None:
    with pytest.raises(FieldError, match=r"^ca: only in the hub config file"):
        parse_check({"name": "t", "target": f"{https.url}/", "ca": https.ca}, "api", "default")
    with pytest.raises(FieldError, match=r"^ca: only for https targets"):
        parse_check({"name": "t", "target": "http://127.0.0.1/", "ca": https.ca})
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"\[\[checks\]\] #1 \('t'\): ca: cannot load"):
        config_checks([{"name": "t", "target": f"{https.url}/", "ca": str(tmp_path / "junk.pem")}])
    with pytest.raises(FieldError, match=r"^ca: cannot load"):
        parse_check({"name": "t", "target": f"{https.url}/", "ca": str(tmp_path / "missing.pem")})


def test_hub_stores_and_exports_the_expiry(tmp_path: Path, https: Tls) -> None:
    db = tmp_path / "db"
    db.mkdir()
    config = tmp_path / "obshub.toml"
    config.write_text(
        f'[[checks]]\nname = "tls"\ntarget = "{https.url}/"\nca = "{https.ca}"\nproject = "test"\ninterval_s = 5\n'
    )
    hub = LiveHub(f"sqlite:///{db}/obshub.db", config=config).start()
    try:
        deadline = time.monotonic() + 20
        while not (found := hub.search_all("kind:check name:tls attrs.up:true")):
            assert time.monotonic() < deadline, "the https check was never probed"
            time.sleep(0.2)
        assert found[0]["attrs"]["tls_expires_at"] == NOT_AFTER_US
        assert hub.search_all(f"kind:check attrs.tls_expires_at:{NOT_AFTER_US}")  # searchable like any attribute
        metric = f'obshub_check_tls_expiry_timestamp_seconds{{check="tls",project="test"}} {NOT_AFTER.timestamp():.9e}'
        text = hub.get("/metrics").text
        assert metric in text
        if not os.path.exists(PROMTOOL):
            unavailable(f"{PROMTOOL} missing (apt-get install prometheus)")
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
    finally:
        hub.stop()

"""Mutual TLS to OpenSearch, for real: the hub's store talks to the test node through a TLS
front that requires a client certificate signed by our CA (the node's integ-test distribution
has no security plugin, so the handshake is terminated here, as a TLS proxy in front of a
cluster would). Certificates are made per test run."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from obshub.errors import StoreUnavailable
from obshub.events import normalize
from obshub.store.base import SearchRequest
from obshub.store.opensearch import OpenSearchStore, parse_url
from tests.opensearch_node import drop_prefix, opensearch_url  # noqa: F401  (session fixture)


def _cert(
    path: Path, name: str, issuer: tuple[Any, x509.Name] | None, ca: bool = False, server: bool = False
) -> tuple[Any, x509.Name]:
    """Write <name>.pem and <name>.key; returns (key, subject) to sign others with."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, issuer_name = issuer if issuer else (key, subject)
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = b.sign(signer_key, hashes.SHA256())
    (path / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return key, subject


class TlsFront:
    """127.0.0.1 TLS listener that requires a client certificate from `ca` and pipes each
    connection to the node's plain HTTP port."""

    def __init__(self, certs: Path, upstream: tuple[str, int]) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs / "ca.pem"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_cert_chain(str(certs / "server.pem"), str(certs / "server.key"))
        self.upstream = upstream
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.refused = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1  # no certificate, or one our CA did not sign
            raw.close()
            return
        up = socket.create_connection(self.upstream)
        self._open += [conn, up]

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pipe, args=(up, conn), daemon=True)
        back.start()
        pipe(conn, up)
        back.join(5)
        conn.close()
        up.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)
        for s in self._open:  # connections a client left open
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    ca = _cert(d, "ca", None, ca=True)
    _cert(d, "server", ca, server=True)
    _cert(d, "hub", ca)
    _cert(d, "rogue", None)  # self-signed: not from our CA
    return d


@pytest.fixture
def front(certs: Path, opensearch_url: str) -> Iterator[TlsFront]:  # noqa: F811
    f = TlsFront(certs, parse_url(opensearch_url).hosts[0])
    try:
        yield f
    finally:
        f.close()


def _url(front: TlsFront, certs: Path, client: str | None, prefix: str = "mtls") -> str:
    url = f"opensearch://127.0.0.1:{front.port}?replicas=0&timeout=10&prefix={prefix}&ca={certs}/ca.pem"
    if client:
        url += f"&cert={certs}/{client}.pem&key={certs}/{client}.key"
    return url


def test_store_works_through_mutual_tls(front: TlsFront, certs: Path) -> None:
    prefix = f"mtls{uuid.uuid4().hex[:8]}"
    store = OpenSearchStore.from_url(_url(front, certs, "hub", prefix))
    assert (store.cfg.tls, store.cfg.client_cert) == (True, f"{certs}/hub.pem")
    store.open()
    try:
        project = store.create_project("p", "pk", [])
        ev = normalize({"id": "over-mtls", "message": "through the TLS front"}, 1_700_000_000_000_000)
        assert store.write_events(project.id, [ev]).accepted == 1
        found = store.search(project.id, SearchRequest(limit=10))
        assert [e["id"] for e in found] == ["over-mtls"]
    finally:
        store.close()
        host, port = front.upstream
        drop_prefix(f"opensearch://{host}:{port}?prefix={prefix}")
    assert front.refused == 0


@pytest.mark.parametrize("client", [None, "rogue"])
def test_without_a_trusted_client_certificate_the_store_is_unavailable(
    front: TlsFront, certs: Path, client: str | None
) -> None:
    store = OpenSearchStore.from_url(_url(front, certs, client))
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.open()
    store.close()
    deadline = time.monotonic() + 5  # the front's handshake thread may finish after the client
    while front.refused < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert front.refused >= 1

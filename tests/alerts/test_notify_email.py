"""The email notifier against a real SMTP server (aiosmtpd) on 127.0.0.1: STARTTLS and implicit
TLS with a self-signed certificate the notifier is told to trust (ca_file), AUTH LOGIN and PLAIN,
a text and an HTML part; a wrong password, an untrusted certificate and a server that is down."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from obshub.alerts.model import Alert, Route
from obshub.alerts.notify.config import parse_notifier
from obshub.alerts.notify.dispatcher import Dispatcher, Retry, deliver
from obshub.alerts.notify.message import Notification
from obshub.events import now_us
from obshub.settings import Settings
from obshub.store import open_store
from tests.hubproc import free_port, wait_until

PASSWORD = "sm7p-pa55"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    pem, keyfile = tmp / "smtp.pem", tmp / "smtp.key"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pem, keyfile


class Mailbox:
    """aiosmtpd's handler: keeps each message and the AUTH mechanism the client used."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.mechanisms: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == PASSWORD.encode()
        self.mechanisms.append(mechanism)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    return _self_signed(tmp_path)


def _server(mailbox: Mailbox, certs: tuple[Path, Path], implicit: bool, exclude: list[str]) -> Controller:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(certs[0]), str(certs[1]))
    # aiosmtpd sees TLS only when it came by STARTTLS: on an implicit-TLS socket it offers AUTH
    # only when told TLS is not required (and then warns if AUTH is required: the test checks
    # that the client did authenticate instead).
    tls: dict[str, Any] = (
        {"ssl_context": ctx, "auth_require_tls": False, "auth_required": False}
        if implicit
        else {"tls_context": ctx, "require_starttls": True, "auth_required": True}
    )
    c = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=mailbox.authenticate,
        auth_exclude_mechanism=exclude,
        **tls,
    )
    c.start()
    return c


@pytest.fixture
def smtp(request: pytest.FixtureRequest, certs: tuple[Path, Path]) -> Iterator[tuple[Mailbox, Controller]]:
    implicit, exclude = request.param
    mailbox = Mailbox()
    c = _server(mailbox, certs, implicit, exclude)
    yield mailbox, c
    c.stop()


def table(c: Controller, certs: tuple[Path, Path], security: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": "mail",
        "type": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": c.port,
        "smtp_security": security,
        "smtp_user": "alerts",
        "smtp_password": PASSWORD,
        "from": "obshub@example.com",
        "to": ["ops@example.com", "dev@example.com"],
        "ca_file": str(certs[0]),
        "timeout_s": 5,
        **kw,
    }


def notification(now: int, resolved: bool = False) -> Notification:
    alerts = tuple(
        Alert(
            labels={"alertname": "checkout-errors", "project": "shop", "group_id": g},
            annotations={"summary": f"<b>{g}</b> is new"},
            starts_at=now - 120_000_000,
            ends_at=now if resolved else None,
            url=f"https://obshub.example.com/groups/{g}?x=1&y=2",
        )
        for g in ("g1", "g2")
    )
    return Notification("1:checkout-errors", "mail", alerts, "https://obshub.example.com", now)


@pytest.mark.parametrize(
    ("smtp", "security", "mechanism"),
    [
        ((False, ["LOGIN"]), "starttls", "PLAIN"),
        ((False, ["PLAIN"]), "starttls", "LOGIN"),
        ((True, []), "tls", "PLAIN"),
    ],
    indirect=["smtp"],
)
def test_delivers_text_and_html_over_tls_with_auth(
    smtp: tuple[Mailbox, Controller], certs: tuple[Path, Path], security: str, mechanism: str
) -> None:
    mailbox, c = smtp
    notifier = parse_notifier(table(c, certs, security))
    assert deliver(notifier, notification(now_us())) is None
    assert mailbox.mechanisms == [mechanism]
    assert mailbox.envelopes == [("obshub@example.com", ["ops@example.com", "dev@example.com"])]
    [msg] = mailbox.messages
    assert msg["Subject"] == "[FIRING:2] checkout-errors (shop)"
    assert msg["From"] == "obshub@example.com" and msg["To"] == "ops@example.com, dev@example.com"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content().replace("\r\n", "\n")  # SMTP line ends
    assert "What:       checkout-errors" in text and "How many:   2 firing" in text and "project shop" in text
    assert "- firing: <b>g1</b> is new — group_id=g1\n  https://obshub.example.com/groups/g1?x=1&y=2" in text
    page = html.get_content()
    assert "&lt;b&gt;g1&lt;/b&gt; is new" in page and "<b>g1</b>" not in page, "HTML-escaped"
    assert "href='https://obshub.example.com/groups/g1?x=1&amp;y=2'" in page


@pytest.mark.parametrize("smtp", [(False, [])], indirect=True)
def test_failures_are_reported_not_raised(smtp: tuple[Mailbox, Controller], certs: tuple[Path, Path]) -> None:
    mailbox, c = smtp
    n = notification(now_us())
    wrong = deliver(parse_notifier(table(c, certs, "starttls", smtp_password="nope")), n)
    assert wrong is not None and not wrong.retry and "SMTP 535" in str(wrong), "bad credentials: not retried"
    untrusted = parse_notifier({k: v for k, v in table(c, certs, "starttls").items() if k != "ca_file"})
    error = deliver(untrusted, n)
    assert error is not None and error.retry and "SSLCertVerificationError" in str(error)
    plain = deliver(parse_notifier(table(c, certs, "none")), n)  # the server offers AUTH only after STARTTLS
    assert plain is not None and not plain.retry and "SMTP AUTH extension not supported" in str(plain)
    assert mailbox.messages == []
    for e in (wrong, error, plain):
        assert PASSWORD not in str(e) and "nope" not in str(e)


def test_server_down_then_up_through_the_dispatcher(tmp_path: Path, certs: tuple[Path, Path]) -> None:
    """The dispatcher retries a mail server that is down and delivers once it is up."""
    mailbox = Mailbox()
    port = free_port()
    cfg = {
        "name": "mail",
        "type": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "starttls",
        "smtp_user": "alerts",
        "smtp_password": PASSWORD,
        "from": "obshub@example.com",
        "to": "ops@example.com",
        "ca_file": str(certs[0]),
        "timeout_s": 2,
    }
    store = open_store(f"sqlite:///{tmp_path}/obshub.db")
    store.open()
    d = Dispatcher(Settings(notifiers=(cfg,)), store, retry=Retry(0.05, 0.2))
    c: Controller | None = None
    try:
        t = now_us()
        d.update("1:r", Route(group_wait_s=0), list(notification(t).alerts), t)
        wait_until(lambda: d.status()[0].failed >= 2, 10, "failed attempts")
        assert "ConnectionRefusedError" in (d.status()[0].last_error or "")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(certs[0]), str(certs[1]))
        c = Controller(mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox.authenticate, tls_context=ctx)
        c.start()
        wait_until(lambda: mailbox.messages, 10, "the mail")
        time.sleep(0.3)
        assert len(mailbox.messages) == 1 and d.status()[0].sent == 1 and d.status()[0].pending == 0
        assert PASSWORD not in repr(d.status())
    finally:
        d.close()
        if c is not None:
            c.stop()
        store.close()

"""Email over SMTP (smtplib): implicit TLS, STARTTLS or plain, optional AUTH, one message with
a text and an HTML alternative. Runs on the dispatcher's notifier thread (smtplib blocks)."""

from __future__ import annotations

import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import escape

from obshub.alerts.notify.config import EmailNotifier
from obshub.alerts.notify.message import DeliveryError, Notification
from obshub.alerts.notify.render import Summary, summarize

__all__ = ["message", "send"]


def _text(s: Summary) -> str:
    out = [
        s.title,
        "",
        f"What:       {s.what}",
        f"Where:      {s.where}",
        f"How many:   {s.count}",
        f"First seen: {s.first_seen}",
        f"Last seen:  {s.last_seen}",
    ]
    if s.link:
        out.append(f"Link:       {s.link}")
    out.append("")
    for item in s.items:
        desc = " — ".join(t for t in (item.text, item.labels) if t)
        out.append(f"- {item.status}: {desc}" + (f"\n  {item.url}" if item.url else ""))
    if s.more:
        out.append(f"... and {s.more} more")
    return "\n".join(out) + "\n"


def _html(s: Summary) -> str:
    rows = "".join(
        f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
        for k, v in (
            ("What", s.what),
            ("Where", s.where),
            ("How many", s.count),
            ("First seen", s.first_seen),
            ("Last seen", s.last_seen),
        )
    )
    items = "".join(
        "<li><b>{status}</b>: {body}</li>".format(
            status=escape(i.status),
            body=(
                f"<a href='{escape(i.url)}'>{escape(' — '.join(t for t in (i.text, i.labels) if t) or i.url)}</a>"
                if i.url
                else escape(" — ".join(t for t in (i.text, i.labels) if t))
            ),
        )
        for i in s.items
    )
    more = f"<p>… and {s.more} more</p>" if s.more else ""
    link = f"<p><a href='{escape(s.link)}'>Open in obshub</a></p>" if s.link else ""
    return (
        f"<!doctype html><html><body><h2>{escape(s.title)}</h2><table>{rows}</table>"
        f"<ul>{items}</ul>{more}{link}</body></html>"
    )


def message(notifier: EmailNotifier, n: Notification) -> EmailMessage:
    s = summarize(n)
    msg = EmailMessage()
    msg["Subject"] = s.title
    msg["From"] = notifier.sender
    msg["To"] = ", ".join(notifier.to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(n.at / 1e6, UTC))
    msg["Message-ID"] = make_msgid(domain=notifier.sender.rpartition("@")[2] or None)
    msg.set_content(_text(s))
    msg.add_alternative(_html(s), subtype="html")
    return msg


def send(notifier: EmailNotifier, n: Notification) -> None:
    """One SMTP session. Raises DeliveryError: retryable unless the server refused for good
    (a 5xx reply: bad credentials, unknown recipient)."""
    shown = f"smtp://{notifier.smtp_host}:{notifier.smtp_port}"
    context = ssl.create_default_context(cafile=notifier.ca_file)
    smtp: smtplib.SMTP | None = None
    try:
        if notifier.smtp_security == "tls":
            smtp = smtplib.SMTP_SSL(notifier.smtp_host, notifier.smtp_port, timeout=notifier.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(notifier.smtp_host, notifier.smtp_port, timeout=notifier.timeout_s)
            if notifier.smtp_security == "starttls":
                smtp.starttls(context=context)
        if notifier.smtp_user is not None and notifier.smtp_password is not None:
            smtp.login(notifier.smtp_user, notifier.smtp_password.reveal())
        smtp.send_message(message(notifier, n))
    except smtplib.SMTPResponseException as e:
        detail = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        raise DeliveryError(f"{shown}: SMTP {e.smtp_code}: {detail[:200]}", retry=e.smtp_code < 500) from None
    except smtplib.SMTPNotSupportedError as e:  # AUTH or STARTTLS not offered: a setting to fix
        raise DeliveryError(f"{shown}: {e}", retry=False) from None
    except smtplib.SMTPRecipientsRefused as e:
        raise DeliveryError(f"{shown}: recipients refused: {', '.join(e.recipients)}", retry=False) from None
    except (OSError, smtplib.SMTPException) as e:  # connect, TLS, timeout, disconnect
        raise DeliveryError(f"{shown}: {type(e).__name__}: {e}") from None
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

"""The notification policy and delivery: `Dispatcher` implements `obshub.alerts.model.Notify`.

`update()` (the rule engine, once per pass per rule) only decides and queues, in memory; each
notifier has its own thread that sends, so a hung SMTP server delays nobody else.

- Alertmanager notifiers get every alert of every update (firing ones with an endsAt
  VALID_EVALUATIONS passes ahead, resolved ones with their endsAt): Alertmanager groups,
  repeats, silences and inhibits. Per URL the newest version of each alert waits until sent.
- Built-in notifiers (webhook, Slack, email) follow the rule's `Route`: new alerts are collected
  for group_wait_s and sent as one notification, re-sent after repeat_interval_s while firing,
  a resolved notification if send_resolved, nothing while muted_until is ahead.

Failures are retried with capped exponential backoff (`Retry`: 1 s doubling to 5 min), forever
unless the receiver refuses the request itself (HTTP 4xx, SMTP 5xx: counted `rejected`); every
attempt is counted (obshub_alert_notifications_total) and the last error kept in `status()`.
Queues are bounded (MAX_QUEUE notifications per built-in notifier, MAX_PENDING alerts per
Alertmanager URL): beyond that the oldest waiting is dropped, counted and logged, and its alerts
forgotten by the log so the next pass notifies them again.

The notification log (per rule and built-in notifier: each alert notified as firing, and when;
a resolved notification decided but not delivered) is a store record, kind "alert-notified",
key "<rule key>@<notifier>", written once a delivery is done (and when a resolve is decided): a
restarted hub (or the next lease holder) does not re-notify what was notified, and notifies what
was not, resolves included. Alertmanager needs no log: it deduplicates by labels itself.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from obshub.alerts.model import Alert, Route
from obshub.alerts.notify import alertmanager, email, slack, webhook
from obshub.alerts.notify.config import AlertmanagerNotifier, EmailNotifier, Notifier, SlackNotifier, parse_notifiers
from obshub.alerts.notify.message import DeliveryError, Notification, http_client
from obshub.errors import StoreError
from obshub.events import now_us
from obshub.settings import Settings
from obshub.store.base import Store
from obshub.telemetry import Telemetry

__all__ = [
    "LOG_KIND",
    "MAX_PENDING",
    "MAX_QUEUE",
    "Dispatcher",
    "NotifierStatus",
    "Retry",
    "deliver",
]

log = structlog.get_logger("obshub.alerts")

LOG_KIND = "alert-notified"
MAX_QUEUE = 1_000  # notifications waiting per built-in notifier (a receiver down for hours)
MAX_PENDING = 10_000  # alerts waiting per Alertmanager URL
VALID_EVALUATIONS = 4  # a firing alert's endsAt for Alertmanager: 4 passes (>= 1 min) ahead, as Prometheus
# A log entry not refreshed for this long past its repeat interval belongs to an alert that no
# longer exists (its rule was deleted): dropped when the record is next written.
STALE_US = 7 * 24 * 3600 * 1_000_000
FORGET_PASSES = 3  # a rule not updated for this many passes: its log is read from the store again


@dataclass(frozen=True)
class Retry:
    """Delay before attempt n+1 after n failures: first_s doubling, at most max_s."""

    first_s: float = 1.0
    max_s: float = 300.0

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.first_s * 2.0 ** min(failures - 1, 30))


@dataclass(frozen=True)
class NotifierStatus:
    """What `status()` and the API show of a notifier: never a secret (target is masked)."""

    name: str
    type: str
    target: str
    sent: int  # deliveries that succeeded
    failed: int  # attempts that failed (each retry counts)
    rejected: int  # notifications the receiver refused for good (not retried)
    dropped: int  # notifications (alerts, for Alertmanager) dropped from a full queue
    pending: int  # notifications (alerts, for Alertmanager) waiting to be sent
    last_ok_at: int | None  # µs
    last_error: str | None
    last_error_at: int | None  # µs

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Entry:
    at: int  # µs the alert was last notified as firing
    saved: bool  # written to the store
    # Its resolved notification, decided but not delivered yet: stored too, so that a hub that
    # stops before delivering it leaves it to the next one (`requeue`: read from the store).
    resolved: Alert | None = None
    requeue: bool = False


@dataclass
class _Batch:
    flush_at: float  # monotonic
    at: int  # µs on the engine's clock (`update`'s now_us): when its alerts count as notified
    alerts: dict[str, Alert] = field(default_factory=dict)


@dataclass
class _Delivery:
    notification: Notification
    failures: int = 0
    next_at: float = 0.0  # monotonic


class _Channel:
    """One notifier: its queue, its thread, its counters. All fields are guarded by the
    dispatcher's condition."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.client: httpx.Client | None = (
            None if isinstance(notifier, EmailNotifier) else http_client(notifier.timeout_s, notifier.ca_file)
        )
        self.batches: dict[str, _Batch] = {}  # built-in: rule key -> alerts within group_wait
        self.queue: deque[_Delivery] = deque()  # built-in
        self.sending = False  # built-in: queue[0] is being sent (not to be dropped)
        urls = notifier.urls if isinstance(notifier, AlertmanagerNotifier) else ()
        self.am: dict[str, dict[str, Alert]] = {u: {} for u in urls}  # per URL: fingerprint -> newest
        self.am_failures: dict[str, int] = dict.fromkeys(urls, 0)
        self.am_next: dict[str, float] = dict.fromkeys(urls, 0.0)
        self.sent = self.failed = self.rejected = self.dropped = 0
        self.last_ok_at: int | None = None
        self.last_error: str | None = None
        self.last_error_at: int | None = None
        self.thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        if self.am:
            return sum(len(p) for p in self.am.values())
        return len(self.queue) + sum(len(b.alerts) for b in self.batches.values())


class Dispatcher:
    """Delivery for one hub. `update` is the engine's entry (`Notify`); `status` what the API
    and the Alerts page show; `close` stops the threads (what is still queued is not lost: its
    alerts were not logged as notified, so the next hub to evaluate notifies them)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        telemetry: Telemetry | None = None,
        *,
        retry: Retry = Retry(),
        max_queue: int = MAX_QUEUE,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._notifiers = parse_notifiers(settings.notifiers)  # ConfigError on a bad table
        self._store = store
        self._telemetry = telemetry
        self._retry = retry
        self._max_queue = max_queue
        self._external_url = settings.base_url
        self._valid_us = VALID_EVALUATIONS * max(settings.alert_interval_s, 60) * 1_000_000
        self._cond = threading.Condition()
        self._closed = False
        self._log: dict[tuple[str, str], dict[str, _Entry]] = {}  # (rule key, notifier) -> fingerprint -> entry
        self._seen: dict[tuple[str, str], float] = {}  # (rule key, notifier) -> monotonic time of the last update
        self._forget_s = FORGET_PASSES * settings.alert_interval_s
        self._unknown: set[str] = set()  # notifier names a route gave that are not configured (warned once)
        self._channels = {name: _Channel(n) for name, n in self._notifiers.items()}
        for ch in self._channels.values():
            if telemetry is not None:  # every series exported at 0 from the start (telemetry.py)
                for outcome in ("sent", "failed", "rejected", "dropped"):
                    telemetry.alert_notifications.labels(ch.notifier.name, outcome)
                telemetry.alert_notifications_pending.labels(ch.notifier.name).set(0)
            ch.thread = threading.Thread(
                target=self._run, args=(ch,), name=f"obshub-notify-{ch.notifier.name}", daemon=True
            )
            ch.thread.start()

    # -- the engine's side ---------------------------------------------------------------------
    def update(self, rule_key: str, route: Route, alerts: Sequence[Alert], now_us: int) -> None:
        """Queue what the policy says is due (`Notify.update`). Reads the rule's notification
        log from the store the first time it sees the rule after a start; never waits on a
        receiver."""
        if self._closed:
            return
        for ch in self._route(route):
            if isinstance(ch.notifier, AlertmanagerNotifier):
                self._update_am(ch, alerts)
                continue
            try:
                notified = self._notified(rule_key, ch.notifier.name)
            except StoreError as e:  # decide at the next pass, when the log can be read
                log.warning("alert log unreadable", rule=rule_key, notifier=ch.notifier.name, error=str(e))
                continue
            with self._cond:
                self._update_builtin(ch, rule_key, route, alerts, now_us, notified)
                self._cond.notify_all()

    def _route(self, route: Route) -> list[_Channel]:
        if not route.notifiers:
            return list(self._channels.values())
        out = []
        for name in route.notifiers:
            if name in self._channels:
                out.append(self._channels[name])
            elif name not in self._unknown:
                self._unknown.add(name)
                log.warning("alert route names an unknown notifier", notifier=name)
        return out

    def _update_am(self, ch: _Channel, alerts: Sequence[Alert]) -> None:
        with self._cond:
            for pending in ch.am.values():
                for a in alerts:
                    fp = a.fingerprint
                    if fp not in pending and len(pending) >= MAX_PENDING:
                        ch.dropped += 1
                        self._count(ch, "dropped")
                        log.error("alertmanager queue full: alert dropped", notifier=ch.notifier.name, cap=MAX_PENDING)
                        continue
                    pending[fp] = a
            self._gauge(ch)
            self._cond.notify_all()

    def _update_builtin(
        self, ch: _Channel, rule_key: str, route: Route, alerts: Sequence[Alert], now: int, notified: dict[str, _Entry]
    ) -> None:
        batch = ch.batches.get(rule_key)
        muted = route.muted_until is not None and route.muted_until > now
        changed = False
        for fp, left in list(notified.items()):  # resolved notifications a stopped hub left undelivered
            if left.requeue and left.resolved is not None:
                left.requeue = False
                if route.send_resolved and not muted:
                    batch = self._add(ch, rule_key, route, left.resolved, now)
                else:
                    del notified[fp]
                    changed = True
        for a in alerts:
            fp = a.fingerprint
            entry = notified.get(fp)
            if a.status == "resolved":
                if batch is not None and batch.alerts.get(fp, a).status == "firing" and entry is None:
                    del batch.alerts[fp]  # fired and resolved within group_wait: never told, nothing to undo
                elif entry is not None and entry.resolved is not None:
                    pass  # already on its way
                elif entry is not None and route.send_resolved and not muted:
                    batch = self._add(ch, rule_key, route, a, now)
                    entry.resolved, entry.saved = a, False
                    changed = True
                elif entry is not None:  # resolved silently (muted, or no resolved notifications)
                    del notified[fp]
                    changed = True
            elif entry is not None and entry.resolved is not None:  # fires again before its resolve went out
                entry.resolved = None
                batch = self._add(ch, rule_key, route, a, now)
            elif not muted and (entry is None or now - entry.at >= route.repeat_interval_s * 1_000_000):
                batch = self._add(ch, rule_key, route, a, now)
        if batch is not None and not batch.alerts:
            del ch.batches[rule_key]
        if changed:
            self._save(rule_key, ch.notifier.name)
        self._gauge(ch)

    def _add(self, ch: _Channel, rule_key: str, route: Route, alert: Alert, now: int) -> _Batch:
        batch = ch.batches.get(rule_key)
        if batch is None:
            batch = ch.batches[rule_key] = _Batch(flush_at=time.monotonic() + route.group_wait_s, at=now)
        batch.alerts[alert.fingerprint] = alert
        return batch

    # -- the notification log ------------------------------------------------------------------
    def _notified(self, rule_key: str, notifier: str) -> dict[str, _Entry]:
        """The rule's log, from memory while this hub keeps evaluating the rule; read from the
        store again after a gap of FORGET_PASSES passes (another hub held the lease meanwhile
        and notified in its stead), unless a delivery of ours is still unwritten."""
        key = (rule_key, notifier)
        now = time.monotonic()
        with self._cond:
            last, self._seen[key] = self._seen.get(key), now
            cached = self._log.get(key)
            fresh = last is not None and now - last < self._forget_s
            if cached is not None and (fresh or not all(e.saved for e in cached.values())):
                return cached
        record = self._store.get_record(LOG_KIND, f"{rule_key}@{notifier}")  # outside the lock: I/O
        alerts = record.value.get("alerts", {}) if record is not None else {}
        entries = {fp: _entry(e) for fp, e in alerts.items() if isinstance(e, dict)}
        with self._cond:
            if key in self._log and not all(e.saved for e in self._log[key].values()):
                return self._log[key]  # a flush came in between: ours is newer
            self._log[key] = entries
            return entries

    def _save(self, rule_key: str, notifier: str) -> None:
        """Write the rule's log for this notifier (caller holds the lock: a store write of one
        small document, ~1 ms on SQLite)."""
        entries = self._log.get((rule_key, notifier), {})
        cutoff = now_us() - STALE_US
        for fp in [fp for fp, e in entries.items() if e.at < cutoff]:
            del entries[fp]
        key = f"{rule_key}@{notifier}"
        try:
            if entries:
                self._store.put_record(LOG_KIND, key, {"alerts": {fp: _entry_json(e) for fp, e in entries.items()}})
            else:
                self._store.delete_record(LOG_KIND, key)
        except StoreError as err:  # a restart may notify these again: at least once, never lost
            log.warning("alert log not written", rule=rule_key, notifier=notifier, error=str(err))
            return
        for entry in entries.values():
            entry.saved = True

    # -- the notifier threads ------------------------------------------------------------------
    def _run(self, ch: _Channel) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                job = self._next_am(ch) if ch.am else self._next_builtin(ch)
                if isinstance(job, float):
                    self._cond.wait(timeout=job)
                    continue
            if isinstance(job, tuple):
                self._deliver_am(ch, *job)
            else:
                self._deliver_builtin(ch, job)

    def _next_am(self, ch: _Channel) -> tuple[str, dict[str, Alert]] | float:
        """(url, alerts to send) when one is due, else how long to wait."""
        now = time.monotonic()
        wait = 60.0
        for url, pending in ch.am.items():
            if pending:
                if ch.am_next[url] <= now:
                    return url, dict(pending)
                wait = min(wait, ch.am_next[url] - now)
        return wait

    def _next_builtin(self, ch: _Channel) -> _Delivery | float:
        now = time.monotonic()
        for rule_key, batch in list(ch.batches.items()):
            if batch.flush_at <= now:
                del ch.batches[rule_key]
                self._flush(ch, rule_key, batch)
        if ch.queue and ch.queue[0].next_at <= now:
            ch.sending = True
            return ch.queue[0]
        due = [b.flush_at for b in ch.batches.values()] + ([ch.queue[0].next_at] if ch.queue else [])
        return max(0.0, min(due) - now) if due else 60.0

    def _flush(self, ch: _Channel, rule_key: str, batch: _Batch) -> None:
        """A batch whose group_wait is over becomes one notification; its alerts count as
        notified from now (so the next passes do not queue them again)."""
        n = Notification(rule_key, ch.notifier.name, tuple(batch.alerts.values()), self._external_url, now_us())
        notified = self._log.setdefault((rule_key, ch.notifier.name), {})
        for a in n.alerts:
            if a.status == "firing":
                notified[a.fingerprint] = _Entry(at=batch.at, saved=False)
            else:
                notified.pop(a.fingerprint, None)
        ch.queue.append(_Delivery(n))
        if len(ch.queue) > self._max_queue:  # the oldest that is not being sent right now
            victim = ch.queue[1] if ch.sending else ch.queue[0]
            ch.queue.remove(victim)
            self._forget(victim.notification)
            ch.dropped += 1
            self._count(ch, "dropped")
            log.error(
                "alert notification dropped: queue full",
                notifier=ch.notifier.name,
                rule=victim.notification.rule_key,
                alerts=len(victim.notification.alerts),
                cap=self._max_queue,
            )
        self._gauge(ch)

    def _forget(self, n: Notification) -> None:
        """A dropped notification was not sent: the next pass queues its firing alerts again, and
        its resolved ones (which the engine reports only once) from the log."""
        notified = self._log.setdefault((n.rule_key, n.receiver), {})
        for a in n.alerts:
            entry = notified.get(a.fingerprint)
            if a.status == "resolved" and entry is None:
                notified[a.fingerprint] = _Entry(at=n.at, saved=False, resolved=a, requeue=True)
            elif a.status == "firing" and entry is not None and not entry.saved:
                del notified[a.fingerprint]

    def _deliver_am(self, ch: _Channel, url: str, alerts: dict[str, Alert]) -> None:
        client = ch.client
        assert client is not None
        error = _attempt(lambda: alertmanager.send(client, url, list(alerts.values()), now_us() + self._valid_us))
        with self._cond:
            pending = ch.am[url]
            if error is None or not error.retry:  # sent, or refused for good: either way done
                for fp, a in alerts.items():
                    if pending.get(fp) is a:
                        del pending[fp]
                ch.am_failures[url] = 0
            else:
                ch.am_failures[url] += 1
                ch.am_next[url] = time.monotonic() + self._retry.delay(ch.am_failures[url])
            self._record(ch, error, f"{len(alerts)} alerts", ch.am_failures[url])

    def _deliver_builtin(self, ch: _Channel, job: _Delivery) -> None:
        error = _attempt(lambda: _send(ch, job.notification))
        with self._cond:
            ch.sending = False
            if error is None or not error.retry:
                if ch.queue and ch.queue[0] is job:
                    ch.queue.popleft()
                self._save(job.notification.rule_key, ch.notifier.name)
            else:
                job.failures += 1
                job.next_at = time.monotonic() + self._retry.delay(job.failures)
            self._record(ch, error, f"rule {job.notification.rule_key}", job.failures)

    def _record(self, ch: _Channel, error: DeliveryError | None, what: str, failures: int) -> None:
        """Counters, status and the log line of one attempt (caller holds the lock)."""
        name = ch.notifier.name
        if error is None:
            ch.sent += 1
            ch.last_ok_at = now_us()
            self._count(ch, "sent")
            log.info("alert notification sent", notifier=name, what=what)
        else:
            ch.last_error, ch.last_error_at = str(error), now_us()
            if error.retry:
                ch.failed += 1
                self._count(ch, "failed")
                retry_in = self._retry.delay(failures)
                log.warning(
                    "alert notification failed", notifier=name, what=what, error=str(error), retry_in_s=retry_in
                )
            else:
                ch.rejected += 1
                self._count(ch, "rejected")
                log.error("alert notification rejected, not retried", notifier=name, what=what, error=str(error))
        self._gauge(ch)

    def _count(self, ch: _Channel, outcome: str) -> None:
        if self._telemetry is not None:
            self._telemetry.alert_notifications.labels(ch.notifier.name, outcome).inc()

    def _gauge(self, ch: _Channel) -> None:
        if self._telemetry is not None:
            self._telemetry.alert_notifications_pending.labels(ch.notifier.name).set(ch.pending)

    # -- status and shutdown -------------------------------------------------------------------
    def status(self) -> list[NotifierStatus]:
        with self._cond:
            return [
                NotifierStatus(
                    name=ch.notifier.name,
                    type=ch.notifier.type,
                    target=ch.notifier.target,
                    sent=ch.sent,
                    failed=ch.failed,
                    rejected=ch.rejected,
                    dropped=ch.dropped,
                    pending=ch.pending,
                    last_ok_at=ch.last_ok_at,
                    last_error=ch.last_error,
                    last_error_at=ch.last_error_at,
                )
                for ch in self._channels.values()
            ]

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop the threads (a delivery in progress finishes, within its timeout_s)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            waiting = sum(ch.pending for ch in self._channels.values())
        for ch in self._channels.values():
            if ch.thread is not None:
                ch.thread.join(timeout_s)
            if ch.client is not None:
                ch.client.close()
        if waiting:
            log.warning("alert notifications not sent at shutdown: the next evaluating hub sends them", waiting=waiting)


def _entry_json(e: _Entry) -> dict[str, Any]:
    if e.resolved is None:
        return {"at": e.at}
    a = e.resolved
    alert = {"labels": a.labels, "annotations": a.annotations, "starts_at": a.starts_at, "ends_at": a.ends_at}
    return {"at": e.at, "resolved": {**alert, "url": a.url}}


def _entry(raw: dict[str, Any]) -> _Entry:
    r = raw.get("resolved")
    resolved = (
        Alert(
            labels=dict(r["labels"]),
            annotations=dict(r.get("annotations", {})),
            starts_at=int(r.get("starts_at", 0)),
            ends_at=int(r["ends_at"]),
            url=str(r.get("url", "")),
        )
        if isinstance(r, dict)
        else None
    )
    return _Entry(at=int(raw["at"]), saved=True, resolved=resolved, requeue=resolved is not None)


def _send(ch: _Channel, n: Notification) -> None:
    notifier = ch.notifier
    if isinstance(notifier, EmailNotifier):
        email.send(notifier, n)
    elif isinstance(notifier, SlackNotifier):
        assert ch.client is not None
        slack.send(ch.client, notifier, n)
    elif isinstance(notifier, AlertmanagerNotifier):
        assert ch.client is not None
        for url in notifier.urls:
            alertmanager.send(ch.client, url, n.alerts, n.at + 5 * 60 * 1_000_000)
    else:
        assert ch.client is not None
        webhook.send(ch.client, notifier, n)


def _attempt(send: Callable[[], None]) -> DeliveryError | None:
    try:
        send()
    except DeliveryError as e:
        return e
    except Exception as e:  # a bug in a renderer must not kill the notifier's thread
        # No traceback: the dev renderer prints the frames' locals, and one of them is the URL.
        log.error("alert notification crashed", error=type(e).__name__)
        return DeliveryError(f"internal error: {type(e).__name__}")
    return None


def deliver(notifier: Notifier, n: Notification) -> DeliveryError | None:
    """One attempt, blocking, outside any Dispatcher (`obshub alerts test`). None: delivered."""
    ch = _Channel(notifier)
    try:
        return _attempt(lambda: _send(ch, n))
    finally:
        if ch.client is not None:
            ch.client.close()

"""Shipping: read batches from the spool, POST them to the hub, ack the spool on 2xx.

Outcome per response (docs/api.md, "Ingest"):

    2xx        stored; per-line `rejected` are permanent: counted and logged, never retried
    413 / 400  the batch is split in halves until the offending line stands alone, then rejected
    415        zstd unknown to this hub: fall back to gzip and resend at once
    401 / 403  configuration error: logged loudly, spool keeps growing, retried every 4x backoff_max
    429 / 503  wait `Retry-After` seconds (capped at 10 min), else backoff
    other      5xx, connection refused/reset, timeout: full-jitter exponential backoff, forever

Delivery is at-least-once: a batch whose 2xx was lost is sent again after restart with the same
event ids, and the hub counts it as duplicates.

Several hubs (`hub.urls`): batches go round-robin, one batch per request to the next hub that is
not marked down, so a fleet of agents loads every hub evenly and a dead hub is noticed within one
batch (sticking to one hub would leave the others idle until it failed). A hub that fails (refused,
reset, timeout, 5xx, 429, 401/403) is marked down for its own backoff (or `Retry-After`) and the same
batch goes at once to the next hub; only when every hub is down does the shipper wait, until the
first one's backoff ends. A batch is acked in the spool only after one hub answered 2xx. A batch
sent again to another hub after an ambiguous failure (a timeout after the first hub had stored it)
carries the same event ids (`<file identity>-<offset>`), and the store keeps one event per id: the
second hub counts them as duplicates, nothing is stored twice.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import AgentConfig
from ..spool import Spool

try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None  # type: ignore[assignment]

__all__ = ["HubTarget", "Shipper"]

_log = logging.getLogger("obshub_agent.ship")
_RETRY_AFTER_MAX_S = 600.0


class _Split(Exception):
    pass


@dataclass
class HubTarget:
    """One hub URL: its connection and health (`obshub_agent_hub_*` metrics, labelled by url)."""

    url: str
    https: bool
    netloc: str
    path: str
    conn: http.client.HTTPConnection | None = None
    failures: int = 0  # consecutive failed requests; 0 = up
    down_until: float = 0.0  # time.monotonic() before which it is not tried
    batches: int = 0  # requests answered 2xx
    errors: int = 0  # failed requests (retried here or on another hub)
    last_status: int = 0  # 0 = connection failed

    @classmethod
    def of(cls, url: str) -> HubTarget:
        u = urlsplit(url)
        return cls(url, u.scheme == "https", u.netloc, (u.path.rstrip("/") or "") + "/api/v1/ingest")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Shipper:
    def __init__(self, cfg: AgentConfig, spool: Spool, *, stop: threading.Event, halt: threading.Event) -> None:
        self.spool = spool
        self.stop = stop  # graceful: finish the spool if it can be done before `halt`
        self.halt = halt  # hard: abandon the batch in flight (it stays in the spool)
        self.pending_config: AgentConfig | None = None  # set by SIGHUP, applied between batches
        self.targets: list[HubTarget] = []
        self._next = 0  # round-robin position in `targets`
        self.configure(cfg)
        # metrics
        self.batches_sent = 0
        self.batches_retried = 0
        self.events_accepted = 0
        self.events_duplicate = 0
        self.events_rejected = 0
        self.bytes_sent = 0  # compressed bytes on the wire
        self.bytes_raw = 0
        self.auth_failures = 0
        self.last_success = 0.0
        self.last_status = 0
        self.idle = True

    def configure(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        old = {t.url: t for t in self.targets}
        for t in self.targets:
            t.close()
        # a URL kept across SIGHUP keeps its counters; its health starts afresh
        self.targets = [old.get(u) or HubTarget.of(u) for u in cfg.urls]
        for t in self.targets:
            t.failures, t.down_until = 0, 0.0
        self._next = 0
        comp = cfg.compression
        if comp == "zstd" and zstandard is None:
            comp = "gzip"
        self.compression = comp
        self._zstd: Any = None

    # -- loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        while not self.halt.is_set():
            if self.pending_config is not None:
                cfg, self.pending_config = self.pending_config, None
                self.close()
                self.configure(cfg)
            batch = self.spool.read_batch(self.cfg.batch_max_bytes, timeout=0.2)
            if batch is None:
                self.idle = True
                if self.stop.is_set():
                    return  # spool drained
                continue
            self.idle = False
            if batch.payload and not self._deliver(batch.payload):
                self.spool.rewind()
                return
            self.spool.ack(batch.end)

    def _deliver(self, payload: bytes) -> bool:
        pending = [payload]
        while pending:
            chunk = pending.pop(0)
            try:
                if not self._deliver_one(chunk):
                    return False
            except _Split:
                lines = chunk.split(b"\n")[:-1]
                if len(lines) <= 1:
                    self.events_rejected += 1
                    _log.error("hub refused a single event as too large/invalid; dropped: %.200r", chunk)
                    continue
                mid = len(lines) // 2
                pending[:0] = [b"\n".join(lines[:mid]) + b"\n", b"\n".join(lines[mid:]) + b"\n"]
        return True

    def _pick(self) -> HubTarget | None:
        """The next hub (round-robin) not marked down; None while every hub is down."""
        now = time.monotonic()
        n = len(self.targets)
        for k in range(n):
            i = (self._next + k) % n
            if self.targets[i].down_until <= now:
                self._next = (i + 1) % n
                return self.targets[i]
        return None

    def _deliver_one(self, chunk: bytes) -> bool:
        while True:
            if self.halt.is_set():
                return False
            if self.pending_config is not None:  # SIGHUP while retrying (e.g. a fixed token)
                cfg, self.pending_config = self.pending_config, None
                self.close()
                self.configure(cfg)
            t = self._pick()
            if t is None:  # every hub is down: wait for the first one's backoff to end
                wait = min(x.down_until for x in self.targets) - time.monotonic()
                if self.halt.wait(max(0.0, wait)):
                    return False
                continue
            status, headers, body = self._post(t, chunk)
            self.last_status = t.last_status = status
            if 200 <= status < 300:
                t.failures, t.down_until = 0, 0.0
                t.batches += 1
                self._accounted(chunk, body)
                return True
            if status in (400, 413):
                raise _Split()
            if status == 415 and self.compression == "zstd":
                _log.warning("hub %s does not accept zstd bodies: switching to gzip", t.url)
                self.compression = "gzip"
                continue
            self.batches_retried += 1
            t.errors += 1
            t.failures += 1
            if status in (401, 403):
                self.auth_failures += 1
                _log.error(
                    "hub %s answered %d to the ingest token: check `token` in the agent config; "
                    "lines keep being spooled, retrying in %.0fs",
                    t.url,
                    status,
                    self.cfg.backoff_max_ms * 4 / 1000,
                )
                delay = self.cfg.backoff_max_ms * 4 / 1000
            elif status in (429, 503) and headers.get("retry-after"):
                delay = _retry_after(headers["retry-after"]) or self._backoff(t.failures)
            else:
                delay = self._backoff(t.failures)
                if t.failures in (1, 5) or t.failures % 20 == 0:
                    others = len(self.targets) > 1
                    _log.warning(
                        "hub unavailable (%s: %s); retry %d in %.1fs%s",
                        t.url,
                        status or "connection failed",
                        t.failures,
                        delay,
                        ", the batch goes to the next hub" if others else "",
                    )
            t.down_until = time.monotonic() + delay

    def _backoff(self, attempt: int) -> float:
        cap = min(self.cfg.backoff_max_ms, self.cfg.backoff_initial_ms * (2 ** min(attempt, 20)))
        return random.uniform(self.cfg.backoff_initial_ms, max(cap, self.cfg.backoff_initial_ms)) / 1000

    def _accounted(self, chunk: bytes, body: bytes) -> None:
        self.batches_sent += 1
        self.last_success = time.time()
        try:
            doc: Any = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        lines = chunk.count(b"\n")
        if not isinstance(doc, dict):
            doc = {}
        rejected = doc.get("rejected") or []
        self.events_accepted += int(doc.get("accepted", lines - len(rejected)))
        self.events_duplicate += int(doc.get("duplicates", 0))
        if rejected:
            self.events_rejected += len(rejected)
            for r in rejected[:5]:
                _log.error("hub rejected event (permanent, not retried): %s", r)
            if len(rejected) > 5:
                _log.error("... and %d more rejected events in this batch", len(rejected) - 5)

    # -- HTTP ------------------------------------------------------------------------------------------
    def _encode(self, chunk: bytes) -> tuple[bytes, str | None]:
        if self.compression == "zstd":
            if self._zstd is None:
                self._zstd = zstandard.ZstdCompressor(level=1)  # reused: its context is ~1 MiB
            return self._zstd.compress(chunk), "zstd"
        if self.compression == "gzip":
            c = zlib.compressobj(1, zlib.DEFLATED, 31)
            return c.compress(chunk) + c.flush(), "gzip"
        return chunk, None

    def _post(self, t: HubTarget, chunk: bytes) -> tuple[int, dict[str, str], bytes]:
        body, enc = self._encode(chunk)
        headers = {
            "Authorization": f"Bearer {self.cfg.token}",
            "Content-Type": "application/x-ndjson",
            "X-Obshub-Sent-At": f"{time.time():.6f}",
            "User-Agent": "obshub-agent/1",
        }
        if enc:
            headers["Content-Encoding"] = enc
        for attempt in (0, 1):  # a kept-alive connection the hub closed: retry once on a fresh one
            conn = t.conn
            if conn is None:
                cls = http.client.HTTPSConnection if t.https else http.client.HTTPConnection
                conn = t.conn = cls(t.netloc, timeout=self.cfg.request_timeout_s)
            try:
                conn.request("POST", t.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if resp.will_close:
                    t.close()
                self.bytes_sent += len(body)
                if 200 <= resp.status < 300:
                    self.bytes_raw += len(chunk)
                return resp.status, hdrs, data
            except (OSError, http.client.HTTPException) as exc:
                t.close()
                if attempt == 0 and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    continue
                _log.debug("POST to %s failed: %s", t.url, exc)
                return 0, {}, b""
        return 0, {}, b""

    def close(self) -> None:
        for t in self.targets:
            t.close()


def _retry_after(value: str) -> float | None:
    try:
        return max(0.0, min(float(value), _RETRY_AFTER_MAX_S))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, min(parsedate_to_datetime(value).timestamp() - time.time(), _RETRY_AFTER_MAX_S))
        except (TypeError, ValueError):
            return None

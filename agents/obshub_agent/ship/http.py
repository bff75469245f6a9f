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
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

from ..config import AgentConfig
from ..spool import Spool

try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None  # type: ignore[assignment]

__all__ = ["Shipper"]

_log = logging.getLogger("obshub_agent.ship")
_RETRY_AFTER_MAX_S = 600.0


class _Split(Exception):
    pass


class Shipper:
    def __init__(self, cfg: AgentConfig, spool: Spool, *, stop: threading.Event, halt: threading.Event) -> None:
        self.spool = spool
        self.stop = stop  # graceful: finish the spool if it can be done before `halt`
        self.halt = halt  # hard: abandon the batch in flight (it stays in the spool)
        self.pending_config: AgentConfig | None = None  # set by SIGHUP, applied between batches
        self.configure(cfg)
        self._conn: http.client.HTTPConnection | None = None
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
        u = urlsplit(cfg.hub)
        self._https = u.scheme == "https"
        self._netloc = u.netloc
        self._path = (u.path.rstrip("/") or "") + "/api/v1/ingest"
        comp = cfg.compression
        if comp == "zstd" and zstandard is None:
            comp = "gzip"
        self.compression = comp
        self._zstd: Any = None
        self._conn = None

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

    def _deliver_one(self, chunk: bytes) -> bool:
        attempt = 0
        while True:
            if self.halt.is_set():
                return False
            if self.pending_config is not None:  # SIGHUP while retrying (e.g. a fixed token)
                cfg, self.pending_config = self.pending_config, None
                self.close()
                self.configure(cfg)
            status, headers, body = self._post(chunk)
            self.last_status = status
            if 200 <= status < 300:
                self._accounted(chunk, body)
                return True
            if status in (400, 413):
                raise _Split()
            if status == 415 and self.compression == "zstd":
                _log.warning("hub does not accept zstd bodies: switching to gzip")
                self.compression = "gzip"
                continue
            attempt += 1
            self.batches_retried += 1
            if status in (401, 403):
                self.auth_failures += 1
                _log.error(
                    "hub answered %d to the ingest token: check `token` in the agent config; "
                    "lines keep being spooled, retrying in %.0fs",
                    status,
                    self.cfg.backoff_max_ms * 4 / 1000,
                )
                delay = self.cfg.backoff_max_ms * 4 / 1000
            elif status in (429, 503) and headers.get("retry-after"):
                delay = _retry_after(headers["retry-after"]) or self._backoff(attempt)
            else:
                delay = self._backoff(attempt)
                if attempt in (1, 5) or attempt % 20 == 0:
                    _log.warning(
                        "hub unavailable (%s); retry %d in %.1fs", status or "connection failed", attempt, delay
                    )
            if self.halt.wait(delay):
                return False

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

    def _post(self, chunk: bytes) -> tuple[int, dict[str, str], bytes]:
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
            conn = self._conn
            if conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                conn = self._conn = cls(self._netloc, timeout=self.cfg.request_timeout_s)
            try:
                conn.request("POST", self._path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if resp.will_close:
                    conn.close()
                    self._conn = None
                self.bytes_sent += len(body)
                if 200 <= resp.status < 300:
                    self.bytes_raw += len(chunk)
                return resp.status, hdrs, data
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conn = None
                if attempt == 0 and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    continue
                _log.debug("POST failed: %s", exc)
                return 0, {}, b""
        return 0, {}, b""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _retry_after(value: str) -> float | None:
    try:
        return max(0.0, min(float(value), _RETRY_AFTER_MAX_S))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, min(parsedate_to_datetime(value).timestamp() - time.time(), _RETRY_AFTER_MAX_S))
        except (TypeError, ValueError):
            return None

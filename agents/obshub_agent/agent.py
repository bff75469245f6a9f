"""The agent process: wires sources -> parse -> spool -> ship, owns threads and signals.

Threads: the main thread reads files and appends to the spool (and handles signals between
passes); one shipper thread empties the spool; one metrics thread serves /metrics.

    SIGTERM/SIGINT  stop reading, spool what was read, save checkpoints, let the shipper drain the
                    spool for up to `shutdown_timeout_s`, exit 0 (the rest ships at next start)
    SIGHUP          re-read the config file; inputs, batching, hub and token change in place,
                    offsets are kept (state_dir changes need a restart)
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from dataclasses import replace
from types import FrameType

from .checkpoints import CheckpointStore
from .config import AgentConfig, ConfigError, load_config
from .metrics import MetricsServer, render
from .ship import Shipper
from .sources import FileSource
from .spool import Spool

__all__ = ["Agent", "AgentLocked"]

_log = logging.getLogger("obshub_agent")


class AgentLocked(RuntimeError):
    """Another agent process owns this state_dir."""


class Agent:
    def __init__(self, cfg: AgentConfig, config_path: str | os.PathLike[str] | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(cfg.state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise AgentLocked(f"another obshub-agent is using state_dir {cfg.state_dir}") from None
        self.checkpoints = CheckpointStore(cfg.state_dir)
        self.checkpoints.load()
        self.spool = Spool(
            cfg.state_dir / "spool",
            max_bytes=cfg.spool_max_bytes,
            segment_bytes=cfg.spool_segment_bytes,
            fsync=cfg.spool_fsync,
        )
        self.source = FileSource(cfg, self.checkpoints)
        self.stop = threading.Event()  # stop reading
        self.ship_stop = threading.Event()  # shipper: drain then exit
        self.halt = threading.Event()  # shipper: exit now
        self.shipper = Shipper(cfg, self.spool, stop=self.ship_stop, halt=self.halt)
        self.events_spooled = 0
        self.failed = False  # a thread crashed: exit non-zero so the supervisor restarts the agent
        self.lags: dict[str, int] = {}
        self._reload = False
        self.metrics: MetricsServer | None = None
        self._metrics_started = False
        if cfg.metrics_address:
            try:
                self.metrics = MetricsServer(cfg.metrics_address, lambda: render(self))
            except OSError as exc:
                self.spool.close()
                os.close(self._lock_fd)
                raise ConfigError(
                    f"metrics_address: cannot listen on {cfg.metrics_address}: {exc.strerror} (another "
                    f'obshub-agent on this host? give each agent its own port, "127.0.0.1:0" for any free '
                    f'one (logged at start), or metrics_address = "off")'
                ) from None

    # -- signals ---------------------------------------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        _log.info(
            "signal %d: stopping (flush, save checkpoints, drain for up to %.1fs)", signum, self.cfg.shutdown_timeout_s
        )
        self.stop.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True

    def reload(self, out: list[bytes]) -> None:
        self._reload = False
        if self.config_path is None:
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            _log.error("SIGHUP: config not reloaded, keeping the running one: %s", exc)
            return
        if new.state_dir != self.cfg.state_dir:
            _log.warning("SIGHUP: state_dir change ignored until restart")
            new = replace(new, state_dir=self.cfg.state_dir)
        self.cfg = new
        self.source.reconfigure(new, out)
        self.spool.max_bytes = new.spool_max_bytes
        self.shipper.pending_config = new
        _log.info("SIGHUP: configuration reloaded (%d inputs); offsets kept", len(new.inputs))

    # -- main loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        if self.metrics is not None:
            self.metrics.start()
            self._metrics_started = True
            _log.info("metrics on http://%s:%d/metrics", self.metrics.server.server_address[0], self.metrics.port)
        else:
            _log.info('metrics endpoint disabled (metrics_address = "off")')
        ship = threading.Thread(target=self._ship, name="shipper", daemon=True)
        ship.start()
        _log.info(
            "obshub-agent started: host=%s hub=%s inputs=%d state_dir=%s",
            self.cfg.host,
            ", ".join(self.cfg.urls),
            len(self.cfg.inputs),
            self.cfg.state_dir,
        )
        try:
            self._read_loop()
        finally:
            self.ship_stop.set()
            ship.join(self.cfg.shutdown_timeout_s)
            self.halt.set()
            ship.join(self.cfg.request_timeout_s + 1)
            left = self.spool.unacked_bytes
            self.close()
            _log.info("obshub-agent stopped: %d bytes left in the spool for the next start", left)
        return 1 if self.failed else 0

    def close(self) -> None:
        """Release files, sockets and the state_dir lock (run() calls it on the way out)."""
        self.shipper.close()
        self.spool.close()
        self.source.close_all()
        if self.metrics is not None:
            if self._metrics_started:
                self.metrics.close()
            else:
                self.metrics.server.server_close()
        os.close(self._lock_fd)

    def _ship(self) -> None:
        try:
            self.shipper.run()
        except Exception:  # never die silently: the spool keeps the data, the metrics show it
            _log.exception("shipper crashed")
            self.failed = True
            self.stop.set()

    def _read_loop(self) -> None:
        cfg = self.cfg
        out: list[bytes] = []
        out_bytes = 0
        out_since = 0.0
        last_discover = 0.0
        last_house = 0.0
        while not self.stop.is_set():
            if self._reload:
                self.reload(out)
                cfg = self.cfg
            now = time.monotonic()
            n0 = len(out)
            if now - last_discover >= cfg.discover_interval_ms / 1000:
                self.source.discover(out)
                last_discover = now
            # a spool record stays near min(batch, segment) bytes: read at most half of that per file and pass
            record_max = min(cfg.batch_max_bytes, cfg.spool_segment_bytes)
            read = self.source.read_pass(out, min(cfg.read_chunk_bytes, max(4096, record_max // 2)))
            if not read or now - last_house >= cfg.poll_interval_ms / 1000:
                self.source.housekeeping(out)
                self.lags = self.source.lags()
                last_house = now
            if len(out) > n0:
                if n0 == 0:
                    out_since = now
                out_bytes += sum(map(len, out[n0:])) + (len(out) - n0)
            if out and (not read or out_bytes >= record_max or (now - out_since) * 1000 >= cfg.batch_max_age_ms):
                if not self._flush(out):
                    break
                out_bytes = 0
            elif not out and self.source.changed:
                # e.g. a copy taken in without a line to ship: its offset is saved now, not with the next line
                self.source.snapshot()
                self.checkpoints.save()
            if not read:
                self.stop.wait(cfg.poll_interval_ms / 1000)
        if out:
            self._flush(out)

    def _flush(self, out: list[bytes]) -> bool:
        """Spool `out` durably, then advance and save the checkpoints. False if stopped while blocked."""
        out.append(b"")  # join -> trailing newline without another copy of the payload
        payload = b"\n".join(out)
        out.pop()
        if not self.spool.append(payload, stop=self.stop):
            _log.info("stopped while the spool was full: %d events not spooled, re-read at next start", len(out))
            return False
        self.events_spooled += len(out)
        out.clear()
        self.source.snapshot()
        self.checkpoints.save()
        return True

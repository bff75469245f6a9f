"""`obshub serve --workers N`: a supervisor process and N worker processes on one port.

Why processes: one hub process is one core of Python (HTTP parsing, NDJSON, validation, the
store's bulk bodies: ~20-30 µs of CPU per event, docs/performance.md). Each worker
(obshub/cli/worker.py) is a whole hub, with its own event loop and group-commit writer, and
contends for the jobs' lease like a replica would (obshub/jobs/lease.py): the jobs still run once
per cluster, and web sessions hold on any worker (their key is in the store, web/session.py).

Design: pre-fork without fork. The supervisor binds the listening socket once and starts each
worker with `subprocess` (a fresh interpreter, so no thread or lock of the supervisor is copied
into it), passing the socket's descriptor: the workers accept on the same socket and the kernel
gives each connection to one of them. A worker that dies leaves its accept queue to the others
(SO_REUSEPORT sockets, one per worker, would reset the connections queued on the dead one).

The supervisor:
- has already run `serve`'s checks (settings, the store reachable, `--demo`): their errors are
  printed once, before any worker exists;
- starts worker 1 alone (the first start on an empty store bootstraps project `default` and
  prints its tokens once; a setting only the app's startup checks fails there, once), then the
  others together; a worker counts as started when it says so on its control socket;
- on SIGTERM or SIGINT sends SIGTERM to every worker (a second signal: SIGINT, on which uvicorn
  stops without waiting for open requests), SIGKILLs what is left after `_STOP_S`, and exits 0;
- restarts a worker that exits: at once, or after a pause (0.5 s, doubling up to 10 s) while
  workers keep exiting within `_FAST_EXIT_S` of their start; exits 1 once `_START_FAILURES`
  starts in a row ended before the app's startup completed;
- owns the metrics directory (PROMETHEUS_MULTIPROC_DIR, obshub/telemetry.py): a fresh temporary
  directory, given to the workers, told of each dead worker, and removed at exit.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

from obshub.settings import Settings
from obshub.telemetry import MULTIPROC_ENV

__all__ = ["supervise"]

_START_FAILURES = 5  # starts in a row that ended before the app's startup completed: give up
_STOP_S = 30.0  # after SIGTERM: uvicorn's 5 s grace, then the jobs' lease handover and alert delivery
_FAST_EXIT_S = 10.0  # a worker that exits sooner after its start is restarted after a pause


def _say(msg: str) -> None:
    print(f"obshub: {msg}", file=sys.stderr, flush=True)


def _status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"status {code}"


@dataclass
class _Worker:
    slot: int  # 1..N: which of the N it replaces when restarted
    proc: subprocess.Popen[bytes]
    control: socket.socket  # the supervisor's end: `R` when started, EOF when it is gone
    started_at: float
    ready: bool = False


class _Supervisor:
    def __init__(self, n: int, listener: socket.socket, args: list[str], metrics_dir: Path) -> None:
        self.n = n
        self.listener = listener
        self.args = args  # the `serve` options the user gave (--host/--port/--store)
        self.env = {**os.environ, MULTIPROC_ENV: str(metrics_dir)}
        self.metrics_dir = metrics_dir
        self.workers: dict[int, _Worker] = {}  # by pid
        self.restarts: list[tuple[float, int]] = []  # (when, slot)
        self.failures = 0  # starts in a row that ended before startup completed
        self.fast_exits = 0  # exits in a row within _FAST_EXIT_S of their start
        self.killed = False
        self.signals: list[int] = []
        self.stopping_since: float | None = None
        self.first_started = False  # worker 1 completed its startup: the others may start
        self.exit_status = 0
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()

    # -- workers ------------------------------------------------------------------------------
    def spawn(self, slot: int) -> None:
        mine, theirs = socket.socketpair()
        cmd = [
            sys.executable,
            "-m",
            "obshub.cli.worker",
            "--listen-fd",
            str(self.listener.fileno()),
            "--control-fd",
            str(theirs.fileno()),
            *self.args,
        ]
        # Its own process group: Ctrl-C in a terminal reaches the supervisor only, which forwards
        # it once (a worker signalled twice, by the terminal and by us, would skip its grace time).
        proc = subprocess.Popen(cmd, env=self.env, pass_fds=(self.listener.fileno(), theirs.fileno()), process_group=0)
        theirs.close()
        w = _Worker(slot, proc, mine, time.monotonic())
        self.workers[proc.pid] = w
        self.sel.register(mine, selectors.EVENT_READ, w)

    def _control(self, w: _Worker) -> None:
        try:
            data = w.control.recv(64)
        except OSError:
            data = b""
        if data:
            if b"R" in data and not w.ready:
                w.ready = True
                self.failures = 0
            return
        self.sel.unregister(w.control)  # EOF: it is exiting; `reap` sees the exit status
        w.control.close()

    def reap(self) -> int | None:
        """Handle every exited worker; returns an exit status when the supervisor must stop."""
        for pid, w in list(self.workers.items()):
            code = w.proc.poll()
            if code is None:
                continue
            del self.workers[pid]
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(w.control)
            w.control.close()
            mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]  # live gauges go
            if self.stopping_since is not None:
                continue
            ran = time.monotonic() - w.started_at
            self.fast_exits = self.fast_exits + 1 if ran < _FAST_EXIT_S else 0
            if not w.ready:
                if not self.first_started:
                    return code if code > 0 else 1  # the first start failed and printed why
                self.failures += 1
                if self.failures >= _START_FAILURES:
                    _say(f"{self.failures} worker starts in a row failed (last: {_status(code)}); stopping")
                    self.stop(signal.SIGTERM)
                    self.exit_status = 1
                    continue
            pause = 0.0 if self.fast_exits == 0 else min(10.0, 0.5 * 2 ** (self.fast_exits - 1))
            _say(
                f"worker {w.slot} (pid {pid}) exited with {_status(code)} after {ran:.0f} s; "
                f"starting another{f' in {pause:.1f} s' if pause else ''}"
            )
            self.restarts.append((time.monotonic() + pause, w.slot))
        return None

    def stop(self, sig: int) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            self.restarts.clear()
            # The workers close theirs as they begin to stop: new connections are then refused
            # at once (a load balancer moves on) rather than queued for nobody.
            self.listener.close()
        for w in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(sig)

    # -- the loop -----------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    def wait(self, timeout: float) -> None:
        """Sleep until a worker says something, a signal arrives, or `timeout`."""
        for key, _ in self.sel.select(timeout):
            if key.fileobj is self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    self.wake_r.recv(4096)
            else:
                self._control(key.data)

    def run(self, banner: str) -> int:
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        old_wakeup = signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        try:
            return self._loop(banner)
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            signal.set_wakeup_fd(old_wakeup)
            for w in self.workers.values():  # only after an error here: make sure none outlives us
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                w.proc.wait()
                w.control.close()
            self.sel.close()
            self.wake_r.close()
            self.wake_w.close()

    def _loop(self, banner: str) -> int:
        self.spawn(1)
        announced = False
        while True:
            while self.signals:  # the first: stop gracefully; another: at once (uvicorn's second Ctrl-C)
                self.signals.pop(0)
                self.stop(signal.SIGTERM if self.stopping_since is None else signal.SIGINT)
            status = self.reap()
            if status is not None:
                return status
            if self.stopping_since is not None:
                if not self.workers:
                    return self.exit_status
                if time.monotonic() - self.stopping_since > _STOP_S and not self.killed:
                    _say(f"workers still running {_STOP_S:.0f} s after the stop signal: killing them")
                    self.stop(signal.SIGKILL)
                    self.killed = True
                self.wait(0.2)
                continue
            if not self.first_started and any(w.ready for w in self.workers.values()):
                self.first_started = True
                for slot in range(2, self.n + 1):
                    self.spawn(slot)
            if not announced and sum(w.ready for w in self.workers.values()) == self.n:
                _say(f"{banner}, {self.n} workers (pids {', '.join(str(p) for p in self.workers)})")
                announced = True
            now = time.monotonic()
            for when, slot in sorted(self.restarts):
                if when <= now:
                    self.restarts.remove((when, slot))
                    self.spawn(slot)
            nxt = min((when for when, _ in self.restarts), default=now + 1.0)
            self.wait(max(0.0, min(1.0, nxt - now)))


def supervise(n: int, settings: Settings, args: list[str]) -> int:
    """Run `n` workers on `settings`' address until a stop signal; returns the exit status."""
    import uvicorn

    # uvicorn's own binding (address family, SO_REUSEADDR; a port taken: its log line, status 3),
    # as one process would bind; listening from here on, so connections queue while a worker restarts.
    listener = uvicorn.Config(app="", host=settings.host, port=settings.port, log_level="warning").bind_socket()
    listener.listen(2048)  # uvicorn's default backlog
    metrics_dir = Path(tempfile.mkdtemp(prefix="obshub-metrics-"))
    try:
        banner = f"serving on {settings.base_url} (store {settings.store.split('@')[-1]})"
        return _Supervisor(n, listener, args, metrics_dir).run(banner)
    finally:
        listener.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)

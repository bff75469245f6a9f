"""The agent's own metrics, all in this module, served as Prometheus text by `http.server`.

Components keep plain integer counters (each written by one thread only, read racily at scrape
time: fine for monotonic counters); `render` turns them into the exposition format. Names follow
`obshub_agent_<thing>_<unit>_total`; the only label with many values is `file` on the lag gauge,
bounded by the number of open files.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import Agent

__all__ = ["MetricsServer", "render"]


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(agent: Agent) -> str:
    src, sh, sp, cps = agent.source, agent.shipper, agent.spool, agent.checkpoints
    rows: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]] = [
        ("obshub_agent_lines_read_total", "counter", "Complete lines read from files.", [({}, src.lines_read)]),
        ("obshub_agent_read_bytes_total", "counter", "Bytes read from files.", [({}, src.lines_bytes)]),
        (
            "obshub_agent_events_spooled_total",
            "counter",
            "Events written to the disk spool.",
            [({}, agent.events_spooled)],
        ),
        (
            "obshub_agent_events_shipped_total",
            "counter",
            "Events the hub acknowledged, by outcome.",
            [
                ({"outcome": "accepted"}, sh.events_accepted),
                ({"outcome": "duplicate"}, sh.events_duplicate),
                ({"outcome": "rejected"}, sh.events_rejected),
            ],
        ),
        ("obshub_agent_batches_sent_total", "counter", "Requests the hub answered 2xx.", [({}, sh.batches_sent)]),
        (
            "obshub_agent_batches_retried_total",
            "counter",
            "Failed requests that will be retried.",
            [({}, sh.batches_retried)],
        ),
        ("obshub_agent_auth_failures_total", "counter", "401/403 answers (config error).", [({}, sh.auth_failures)]),
        ("obshub_agent_sent_bytes_total", "counter", "Compressed bytes sent to the hub.", [({}, sh.bytes_sent)]),
        ("obshub_agent_spool_bytes", "gauge", "Bytes of spool segments on disk.", [({}, sp.disk_bytes)]),
        (
            "obshub_agent_spool_unacked_bytes",
            "gauge",
            "Spooled bytes not yet acknowledged by the hub.",
            [({}, sp.unacked_bytes)],
        ),
        ("obshub_agent_spool_max_bytes", "gauge", "Spool cap.", [({}, sp.max_bytes)]),
        (
            "obshub_agent_spool_full",
            "gauge",
            "1 while reading is paused because the spool is full.",
            [({}, 1 if sp.blocked else 0)],
        ),
        (
            "obshub_agent_backpressure_total",
            "counter",
            "Times reading paused on a full spool.",
            [({}, sp.blocked_count)],
        ),
        (
            "obshub_agent_backpressure_seconds_total",
            "counter",
            "Time spent paused on a full spool.",
            [({}, sp.blocked_seconds)],
        ),
        (
            "obshub_agent_spool_corrupt_records_total",
            "counter",
            "Spool records failing their checksum.",
            [({}, sp.corrupt_records)],
        ),
        (
            "obshub_agent_checkpoint_corrupt_total",
            "counter",
            "Corrupt checkpoint files moved aside.",
            [({}, cps.corrupt_files)],
        ),
        ("obshub_agent_checkpoint_saves_total", "counter", "Checkpoint file writes.", [({}, cps.saves)]),
        ("obshub_agent_files_open", "gauge", "Files being tailed.", [({}, len(src.files))]),
        (
            "obshub_agent_file_truncations_total",
            "counter",
            "Truncations (copytruncate) detected.",
            [({}, src.truncations)],
        ),
        (
            "obshub_agent_file_rotations_total",
            "counter",
            "Files that left their globs (renamed or deleted).",
            [({}, src.rotations)],
        ),
        (
            "obshub_agent_file_copies_total",
            "counter",
            "New files recognised as copies of files already read (copytruncate); only their unread part is read.",
            [({}, src.copies)],
        ),
        (
            "obshub_agent_file_lag_bytes",
            "gauge",
            "Bytes of a file not yet spooled.",
            [({"file": p}, v) for p, v in sorted(agent.lags.items())],
        ),
        (
            "obshub_agent_hub_up",
            "gauge",
            "Per hub URL: 1 unless its last request failed (it is then skipped for its backoff).",
            [({"url": t.url}, 0 if t.failures else 1) for t in sh.targets],
        ),
        (
            "obshub_agent_hub_batches_sent_total",
            "counter",
            "Per hub URL: requests answered 2xx.",
            [({"url": t.url}, t.batches) for t in sh.targets],
        ),
        (
            "obshub_agent_hub_errors_total",
            "counter",
            "Per hub URL: failed requests (connection, timeout, 5xx, 429, 401/403); the batch is retried.",
            [({"url": t.url}, t.errors) for t in sh.targets],
        ),
        (
            "obshub_agent_last_success_timestamp_seconds",
            "gauge",
            "Time of the last 2xx from the hub.",
            [({}, sh.last_success)],
        ),
    ]
    rows += _process_rows()
    out: list[str] = []
    for name, typ, help_, samples in rows:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {typ}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {float(value)!r}" if lab else f"{name} {float(value)!r}")
    return "\n".join(out) + "\n"


def _process_rows() -> list[tuple[str, str, str, list[tuple[dict[str, str], float]]]]:
    """The standard `process_*` series (as every Prometheus client library exports them), from
    /proc/self; none where there is no /proc."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    started = _boot_time() + int(fields[19]) / tick
    return [
        ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", [({}, cpu)]),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", [({}, rss)]),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            [({}, started)],
        ),
    ]


@functools.cache
def _boot_time() -> float:
    """The machine's boot time (a process's start is counted from it): read once, not per scrape."""
    with open("/proc/stat") as f:
        return next(float(line.split()[1]) for line in f if line.startswith("btime"))


class MetricsServer:
    def __init__(self, address: str, render_fn: Callable[[], str]) -> None:
        host, _, port = address.rpartition(":")
        fn = render_fn

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the stdlib's name
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = fn().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

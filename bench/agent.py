"""Agent throughput: tail -> real hub, for JSON lines and for plain text.

    python bench/agent.py [--lines 200000] [--formats json,text,python]

Starts `obshub serve` on a temporary SQLite store (public CLI: `obshub project create`, `obshub
serve`), then per format starts `obshub-agent`, appends N lines to a file it tails and waits
until the hub acknowledged all of them. Reported per format:

- e2e lines/s: wall clock from the first write to the last ack (bounded by the hub too);
- agent CPU s / 100k lines and lines/s per core of agent CPU (user+system of the agent process,
  from /proc: the figure the agent is judged on; target >= 100,000 JSON lines/s per core);
- peak RSS of the agent (target <= 64 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {ln.rpartition(" ")[0]: float(ln.rpartition(" ")[2]) for ln in text.splitlines() if ln and ln[0] != "#"}


def make_lines(fmt: str, n: int) -> bytes:
    out = []
    if fmt == "json":  # shaped like obshub_sdk output
        for i in range(n):
            out.append(
                json.dumps(
                    {
                        "timestamp": f"2026-01-02T03:04:{i % 60:02d}.{i % 1000:03d}Z",
                        "level": "info",
                        "message": f"GET /api/orders/{i} 200",
                        "logger": "shop.api",
                        "service": "shop",
                        "request_id": f"{i:032x}",
                        "trace_id": f"{i * 7:032x}",
                        "user_id": str(i % 997),
                        "duration_ms": i % 250,
                    }
                )
            )
    elif fmt == "text":
        for i in range(n):
            out.append(f"worker {i % 16} processed job {i} for tenant {i % 97} in {i % 250} ms, queue depth {i % 31}")
    elif fmt == "python":
        for i in range(n):
            out.append(
                f"2026-01-02 03:04:{i % 60:02d},{i % 1000:03d} INFO shop.worker processed job {i} in {i % 250} ms"
            )
    return ("\n".join(out) + "\n").encode()


def run_format(fmt: str, n: int, hub: str, token: str, work: Path) -> dict[str, float]:
    d = work / fmt
    (d / "logs").mkdir(parents=True)
    mport = free_port()
    cfg = d / "agent.toml"
    cfg.write_text(f"""hub = "{hub}"
token = "{token}"
host = "bench"
state_dir = "{d / "state"}"
metrics_address = "127.0.0.1:{mport}"

[[inputs]]
paths = ["{d / "logs" / "*.log"}"]
format = "{fmt}"
service = "bench-{fmt}"
""")
    data = make_lines(fmt, n)
    with open(d / "agent.log", "wb") as log:  # the child keeps its own descriptor
        agent = subprocess.Popen(
            [sys.executable, "-m", "obshub_agent", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                metrics(mport)
                break
            except OSError:
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise RuntimeError("agent did not start") from None
                time.sleep(0.05)
        time.sleep(0.3)
        cpu0 = proc_cpu(agent.pid)
        t0 = time.monotonic()
        with open(d / "logs" / "app.log", "wb") as f:
            f.write(data)
        peak = 0
        done_key = 'obshub_agent_events_shipped_total{outcome="accepted"}'
        dup_key = 'obshub_agent_events_shipped_total{outcome="duplicate"}'
        while True:
            m = metrics(mport)
            peak = max(peak, proc_rss(agent.pid))
            if m.get(done_key, 0) + m.get(dup_key, 0) >= n:
                break
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"timeout: {m.get(done_key)} of {n} acknowledged")
            time.sleep(0.25)  # scraping /metrics costs agent CPU too: not too often
        wall = time.monotonic() - t0
        cpu = proc_cpu(agent.pid) - cpu0
        return {
            "lines": n,
            "bytes": len(data),
            "wall": wall,
            "cpu": cpu,
            "rss": peak,
            "sent": m["obshub_agent_sent_bytes_total"],
        }
    finally:
        agent.terminate()
        agent.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--formats", default="json,text")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="obshub-agent-bench-"))
    store = f"sqlite:///{work}/hub.db"
    creds = json.loads(
        subprocess.check_output(
            [sys.executable, "-m", "obshub", "project", "create", "bench", "--store", store], cwd=REPO
        )
    )
    port = free_port()
    with open(work / "hub.log", "wb") as log:  # the child keeps its own descriptor
        hub = subprocess.Popen(
            [sys.executable, "-m", "obshub", "serve", "--host", "127.0.0.1", "--port", str(port), "--store", store],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/readyz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("hub did not start") from None
                time.sleep(0.1)
        rows = [(fmt, run_format(fmt, args.lines, url, creds["ingest_token"], work)) for fmt in args.formats.split(",")]
    finally:
        hub.terminate()
        hub.wait(30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nobshub-agent tail -> hub, {args.lines:,} lines per format, {os.cpu_count()} CPUs\n")
    hdr = (
        "format",
        "MB",
        "e2e s",
        "e2e lines/s",
        "agent CPU s",
        "CPU s/100k",
        "lines/s per agent core",
        "peak RSS MiB",
        "wire ratio",
    )
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for fmt, r in rows:
        print(
            f"| {fmt} | {r['bytes'] / 1e6:.1f} | {r['wall']:.2f} | {r['lines'] / r['wall']:,.0f} | {r['cpu']:.2f} | "
            f"{r['cpu'] / r['lines'] * 1e5:.3f} | {r['lines'] / max(r['cpu'], 1e-9):,.0f} | {r['rss'] / 2**20:.1f} | "
            f"{r['bytes'] / max(r['sent'], 1):.1f}x |"
        )


if __name__ == "__main__":
    main()

"""The `obshub` command as users run it: subprocesses against a real hub subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubproc import HubProcess, free_port


def obshub(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "obshub", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.mark.parametrize("cmd", [[], ["serve"], ["project"], ["project", "create"], ["project", "list"], ["demo"],
                                 ["search"], ["trace"]])
def test_help_everywhere(cmd: list[str]) -> None:
    r = obshub(*cmd, "--help")
    assert r.returncode == 0
    assert "usage: obshub" in r.stdout


def test_project_create_prints_contract_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    r = obshub("project", "create", "shop", "--store", url, env={"OBSHUB_PORT": "9999"})
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) == {"project", "project_id", "ingest_token", "read_token", "dsn"}
    assert data["project"] == "shop" and isinstance(data["project_id"], int)
    assert data["dsn"].startswith("http://") and data["dsn"].endswith(f"@127.0.0.1:9999/{data['project_id']}")
    again = obshub("project", "create", "shop", "--store", url)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = obshub("project", "list", "--store", url)
    assert json.loads(listed.stdout)["project"] == "shop"


def test_bad_configuration_names_the_key(tmp_path: Path) -> None:
    r = obshub("serve", env={"OBSHUB_PORT": "eighty"})
    assert r.returncode == 2 and "OBSHUB_PORT" in r.stderr
    r = obshub("project", "list", "--store", "mysql://x")
    assert r.returncode == 2 and "OBSHUB_STORE" in r.stderr
    cfg = tmp_path / "hub.toml"
    cfg.write_text("max_inflight = 'many'\n")
    r = obshub("serve", env={"OBSHUB_CONFIG": str(cfg)})
    assert r.returncode == 2 and "max_inflight" in r.stderr


def test_serve_with_a_store_it_cannot_open_says_why_in_one_line(tmp_path: Path) -> None:
    """A hub that cannot reach its store retries for `store_wait_s`, saying why, then exits
    non-zero with the reason and no traceback (docs/opensearch.md)."""
    port = free_port()  # nothing listens there
    t = time.monotonic()
    r = obshub("serve", "--port", str(free_port()), "--store", f"opensearch://127.0.0.1:{port}",
               env={"OBSHUB_STORE_WAIT_S": "2.5"})
    assert r.returncode == 1, r.stderr
    assert 2.5 <= time.monotonic() - t < 60
    waits = [ln for ln in r.stderr.splitlines() if ln.startswith("obshub: waiting for the store (OpenSearch unreachable")]
    assert len(waits) == 2 and "next try in 1 s" in waits[0], r.stderr  # after 1 s, then 1.5 s more
    assert r.stderr.splitlines()[-1].startswith("obshub: cannot start: OpenSearch unreachable") and f"port={port}" in r.stderr
    assert "Traceback" not in r.stderr and "serving on" not in r.stderr
    r = obshub("serve", "--demo", "--port", str(free_port()), "--store", f"opensearch://127.0.0.1:{port}",
               env={"OBSHUB_STORE_WAIT_S": "0"})
    assert r.returncode == 1 and "OpenSearch unreachable" in r.stderr and "Traceback" not in r.stderr, r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = obshub("serve", "--port", str(free_port()), "--store", f"sqlite:///{blocker}/sub/hub.db")
    assert r.returncode == 2 and "configuration error: OBSHUB_STORE" in r.stderr, r.stderr  # not retried
    assert "waiting" not in r.stderr
    assert "Traceback" not in r.stderr


def test_first_start_bootstraps_default_project(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "obshub", "serve", "--port", str(port), "--store",
                             f"sqlite:///{tmp_path}/b.db"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]  # type: ignore[union-attr]
        start = next(i for i, ln in enumerate(lines) if "created project 'default'" in ln)
        creds = dict(ln.split() for ln in lines[start + 1:start + 4])
        assert creds["dsn"].endswith(f":{port}/1")

        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/search",
                              headers={"Authorization": f"Bearer {creds['read_token']}"})
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.fixture
def hubproc(tmp_path: Path) -> Iterator[HubProcess]:
    h = HubProcess(f"sqlite:///{tmp_path}/hub.db", log_path=tmp_path / "hub.log").start()
    yield h
    h.stop()


def test_demo_then_search_and_trace(hubproc: HubProcess) -> None:
    h = hubproc
    r = obshub("demo", "--url", h.url, "--token", h.ingest_token)
    assert r.returncode == 0, r.stderr
    assert "stored" in r.stdout and "events" in r.stderr  # summary + progress bar
    events = h.search_all(**{"from": "-1d"})
    assert {e.get("host") for e in events} == {"web-1", "web-2", "web-3"}
    assert {e.get("service") for e in events} == {"shop-web", "shop-api"}
    assert len({e["user_id"] for e in events if "user_id" in e}) == 50
    assert sum(1 for e in events if e["kind"] == "error") >= 40

    env = {"OBSHUB_URL": h.url, "OBSHUB_TOKEN": h.read_token}
    tr = obshub("trace", "req-demo-cross-host", env=env)
    assert tr.returncode == 0, tr.stderr
    assert "hosts web-1, web-2" in tr.stdout and tr.stdout.count("req-demo-cross-host") >= 4
    js = json.loads(obshub("trace", "req-demo-cross-host", "--json", env=env).stdout)
    # The demo's web-2 clock is 1.5 s slow: raw order puts web-2 first, the API says so via
    # skew_ms, and the text output above is on corrected time (web-1's request came first).
    assert js["hosts"] == ["web-2", "web-1"]
    assert -1700 < js["skew_ms"]["web-2"] <= -1490 and js["skew_ms"]["web-1"] == 0
    assert "ordered on corrected time" in tr.stdout and "web-2 -1" in tr.stdout
    timeline = h.get("/api/v1/users/u-0007/timeline").json()
    switched = [x for x in timeline["requests"] if x["host_switch"]]
    assert any(x["request_id"] == "req-demo-cart-lost" and x["errors"] >= 1 for x in switched)

    s = obshub("search", 'level:error "timed out"', "--limit", "5", env=env)
    assert s.returncode == 0 and s.stdout.count("timed out") == 5
    bad = obshub("search", "level:error (", env=env)
    assert bad.returncode == 1 and "unclosed" in bad.stderr and "^" in bad.stderr
    none = obshub("trace", "no-such-id", env=env)
    assert none.returncode == 1 and "no events" in none.stderr
    noauth = obshub("search", "x", "--url", h.url, "--token", "wrong")
    assert noauth.returncode == 1 and "401" in noauth.stderr
    down = obshub("search", "x", "--url", "http://127.0.0.1:9", "--token", "t")
    assert down.returncode == 1 and "cannot reach" in down.stderr
    refused = obshub("demo", "--url", h.url, "--token", h.read_token)  # a read token cannot ingest
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr == "obshub: hub answered 403: this is a read token; this endpoint needs an ingest token\n"


# -- export ---------------------------------------------------------------------------------------

def test_export_help_states_the_column_rule() -> None:
    r = obshub("export", "--help")
    assert r.returncode == 0 and "usage: obshub export" in r.stdout
    for words in ("--format {csv,ndjson}", "--columns", "-o FILE", "attrs.<key>", "oldest first"):
        assert words in " ".join(r.stdout.split()), words


def _exported(h: HubProcess, n: int) -> None:
    t0 = time.time() - 600
    lines = [{"id": f"x-{i:05d}", "ts": t0 + i * 0.001, "service": "exp", "host": f"web-{i % 3}",
              "message": f'row {i}, "quoted"\nsecond line' if i % 100 == 0 else f"row {i}", "attrs": {"n": i}}
             for i in range(n)]
    assert h.ingest(lines).json()["accepted"] == n


def test_export_csv_to_a_file_and_ndjson_to_stdout(hubproc: HubProcess, tmp_path: Path) -> None:
    import csv

    h = hubproc
    _exported(h, 2500)
    env = {"OBSHUB_URL": h.url, "OBSHUB_TOKEN": h.read_token}
    out = tmp_path / "out" / "rows.csv"
    out.parent.mkdir()
    r = obshub("export", "service:exp", "--from=-1h", "--format", "csv", "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert "exported 2,500 rows in" in r.stderr and "rows/s" in r.stderr and f"to {out}" in r.stderr
    assert [p.name for p in out.parent.iterdir()] == ["rows.csv"]  # no temporary file left
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == [f"x-{i:05d}" for i in range(2500)]  # oldest first
    assert rows[100]["message"] == 'row 100, "quoted"\nsecond line' and rows[100]["attrs.n"] == "100"

    nd = obshub("export", "service:exp host:web-1", "--from=-1h", "--format", "ndjson", env=env)
    assert nd.returncode == 0, nd.stderr
    ids = [json.loads(line)["id"] for line in nd.stdout.splitlines()]
    assert ids == [f"x-{i:05d}" for i in range(2500) if i % 3 == 1]
    assert f"exported {len(ids):,} rows" in nd.stderr

    cols = obshub("export", "service:exp", "--from=-1h", "--columns", "id,n", env=env)
    assert cols.returncode == 0 and cols.stdout.splitlines()[:2] == ["id,n", "x-00000,0"]


def test_export_refusals_write_no_file(hubproc: HubProcess, tmp_path: Path) -> None:
    h = hubproc
    out = tmp_path / "rows.csv"
    bad = obshub("export", "level:error (", "-o", str(out), "--url", h.url, "--token", h.read_token)
    assert bad.returncode == 1 and "hub answered 400: unclosed" in bad.stderr and "^" in bad.stderr
    wrong = obshub("export", "--format", "ndjson", "--columns", "id", "-o", str(out), "--url", h.url,
                   "--token", h.read_token)
    assert wrong.returncode == 1 and "columns: only applies to format=csv" in wrong.stderr
    noauth = obshub("export", "-o", str(out), "--url", h.url, "--token", h.ingest_token)
    assert noauth.returncode == 1 and "403" in noauth.stderr
    down = obshub("export", "-o", str(out), "--url", "http://127.0.0.1:9", "--token", "t")
    assert down.returncode == 1 and "cannot reach" in down.stderr
    assert list(tmp_path.glob("*rows.csv*")) == []
    fmt = obshub("export", "--format", "xml", "--url", h.url, "--token", h.read_token)
    assert fmt.returncode == 2 and "invalid choice" in fmt.stderr


def test_export_stream_broken_midway_leaves_the_target_untouched(hubproc: HubProcess, tmp_path: Path) -> None:
    import signal

    from obshub.events import normalize
    from obshub.store import open_store

    h = hubproc
    store = open_store(h.store_url)  # 200k rows straight into the store: an export of a few seconds
    store.open()
    try:
        now = time.time_ns() // 1000
        for b in range(0, 200_000, 10_000):
            batch = [{"id": f"b{i:06d}", "ts": now - 10_000_000 + i, "message": f"row {i}"} for i in range(b, b + 10_000)]
            store.write_events(h.project_id, [normalize(e, now) for e in batch])
    finally:
        store.close()
    out = tmp_path / "rows.ndjson"
    out.write_text("the previous export\n")
    proc = subprocess.Popen([sys.executable, "-m", "obshub", "export", "--from=-1h", "--format", "ndjson", "-o", str(out),
                             "--url", h.url, "--token", h.read_token], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in tmp_path.glob(".rows.ndjson.*.part")):
            assert proc.poll() is None and time.monotonic() < deadline, "the export never started"
            time.sleep(0.005)
        h.stop(signal.SIGKILL)  # the hub dies mid-export
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert "export incomplete: the stream broke after" in err and f"{out} left untouched" in err
    assert out.read_text() == "the previous export\n"
    assert not list(tmp_path.glob(".rows.ndjson.*"))  # the partial temporary file is removed

"""The `obshub` command as users run it: subprocesses against a real hub subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import event, now_us
from tests.hubproc import HubProcess, free_port


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without OBSHUB_* settings (a developer's own must not leak into
    a test), plus `env`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OBSHUB_")}, **(env or {})}


def obshub(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "obshub", *args], capture_output=True, text=True, timeout=120, env=cli_env(env), cwd=cwd
    )


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["serve"],
        ["project"],
        ["project", "create"],
        ["project", "list"],
        ["demo"],
        ["search"],
        ["trace"],
        ["token"],
        ["token", "list"],
        ["token", "create"],
        ["token", "revoke"],
    ],
)
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
    r = obshub(
        "serve",
        "--port",
        str(free_port()),
        "--store",
        f"opensearch://127.0.0.1:{port}",
        env={"OBSHUB_STORE_WAIT_S": "2.5"},
    )
    assert r.returncode == 1, r.stderr
    assert 2.5 <= time.monotonic() - t < 60
    waits = [
        ln for ln in r.stderr.splitlines() if ln.startswith("obshub: waiting for the store (OpenSearch unreachable")
    ]
    assert len(waits) == 2 and "next try in 1 s" in waits[0], r.stderr  # after 1 s, then 1.5 s more
    assert (
        r.stderr.splitlines()[-1].startswith("obshub: cannot start: OpenSearch unreachable")
        and f"port={port}" in r.stderr
    )
    assert "Traceback" not in r.stderr and "serving on" not in r.stderr
    r = obshub(
        "serve",
        "--demo",
        "--port",
        str(free_port()),
        "--store",
        f"opensearch://127.0.0.1:{port}",
        env={"OBSHUB_STORE_WAIT_S": "0"},
    )
    assert r.returncode == 1 and "OpenSearch unreachable" in r.stderr and "Traceback" not in r.stderr, r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = obshub("serve", "--port", str(free_port()), "--store", f"sqlite:///{blocker}/sub/hub.db")
    assert r.returncode == 2 and "configuration error: OBSHUB_STORE" in r.stderr, r.stderr  # not retried
    assert "waiting" not in r.stderr
    assert "Traceback" not in r.stderr


def test_a_setting_the_apps_startup_refuses_is_one_line_and_status_2(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text('[[alerts]]\nname = "x"\n')  # no kind: refused when the jobs start, in the lifespan
    r = obshub(
        "serve", "--port", str(free_port()), "--store", f"sqlite:///{tmp_path}/hub.db", env={"OBSHUB_CONFIG": str(cfg)}
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[-1].startswith("obshub: configuration error: OBSHUB_CONFIG: [[alerts]] #1 ('x')")
    assert "Traceback" not in r.stderr


def test_first_start_bootstraps_default_project(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "obshub", "serve", "--port", str(port), "--store", f"sqlite:///{tmp_path}/b.db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(5)]  # type: ignore[union-attr]
        start = next(i for i, ln in enumerate(lines) if "created project 'default'" in ln)
        creds = dict(ln.split() for ln in lines[start + 1 : start + 4])
        assert creds["dsn"].endswith(f":{port}/1")

        for _ in range(100):
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/search", headers={"Authorization": f"Bearer {creds['read_token']}"}
                )
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
    users = {e["user_id"] for e in events if "user_id" in e}
    assert len({u for u in users if u.startswith("u-")}) == 50  # the shop's; p-*: the product analytics demo
    assert {u[:2] for u in users} == {"u-", "p-"}
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


def test_relative_times_are_separate_arguments(hubproc: HubProcess) -> None:
    """`--from -7d`, as README and --help write it: argparse alone takes `-7d` for an option
    ("expected one argument"); `--from=-7d` works as before."""
    h = hubproc
    day = 86_400_000_000
    now = now_us()
    sent = [
        event(message="three days ago", ts=now - 3 * day),
        event(message="ten days ago", ts=now - 10 * day),
        event(message="a minute ago", ts=now - 60_000_000),
    ]
    assert h.ingest(sent).json()["accepted"] == 3
    env = {"OBSHUB_URL": h.url, "OBSHUB_TOKEN": h.read_token}
    for args in (["--from", "-7d", "--to", "-1d"], ["--from=-7d", "--to=-1d"], ["--to", "-1d", "ago", "--from", "-7d"]):
        s = obshub("search", *args, env=env)
        assert s.returncode == 0, (args, s.stderr)
        assert "three days ago" in s.stdout and "ten days ago" not in s.stdout and "a minute ago" not in s.stdout, args
    s = obshub("search", "ago", "--from", "-30d", "--limit", "5", env=env)
    assert s.returncode == 0 and s.stdout.count(" ago") == 3, s.stderr
    bad = obshub("search", "--from", "-7x", env=env)  # reaches the hub, which names the parameter
    assert bad.returncode == 1 and "from: '-7x' is not RFC 3339" in bad.stderr, bad.stderr
    missing = obshub("search", "--from", "--json", env=env)  # an option is still not a value
    assert missing.returncode == 2 and "argument --from: expected one argument" in missing.stderr
    assert "--from TIME" in obshub("search", "--help").stdout


def test_output_into_a_closed_pipe_ends_quietly(hubproc: HubProcess) -> None:
    """`obshub search ... | head -1`: no BrokenPipeError traceback, exit status 141 (SIGPIPE's),
    like a Unix tool. 1000 lines of ~260 bytes: far more than a pipe holds (64 KiB), so the
    writes after the reader left fail for sure."""
    h = hubproc
    assert h.ingest([event(message=f"line {i} " + "x" * 250) for i in range(1000)]).json()["accepted"] == 1000
    env = cli_env({"OBSHUB_URL": h.url, "OBSHUB_TOKEN": h.read_token})
    for extra in ([], ["--json"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "obshub", "search", "--limit", "1000", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader leaves after one line
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 141, err
        assert first.strip() and err == "", err
    shell = subprocess.run(
        ["bash", "-c", 'python -m obshub search --limit 1000 | head -1; echo "status ${PIPESTATUS[0]}"'],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
    )
    assert shell.stdout.splitlines()[1:] == ["status 141"] and "line" in shell.stdout and shell.stderr == "", (
        shell.stderr
    )


def test_store_commands_read_the_hub_settings_and_make_no_store_by_accident(tmp_path: Path) -> None:
    """`project list` and `token ...` open the store `serve` would (OBSHUB_*, the OBSHUB_CONFIG
    file, --store) and refuse a store that is not there instead of making an empty one;
    `project create` may make one, and says so."""
    for cmd in (
        ["project", "list"],
        ["token", "list"],
        ["token", "create", "--project", "default", "--scope", "read"],
        ["token", "revoke", "0123456789ab"],
    ):
        r = obshub(*cmd, cwd=tmp_path)
        assert r.returncode == 1, (cmd, r.stderr)
        assert r.stderr == (
            f"obshub: no store at sqlite:///./obshub-data/obshub.db (the default, in {tmp_path}): "
            "point OBSHUB_STORE, `store` in the OBSHUB_CONFIG file, or --store at the hub's store\n"
        )
    r = obshub("project", "list", "--store", f"sqlite:///{tmp_path}/elsewhere.db", cwd=tmp_path)
    assert r.returncode == 1 and f"no store at sqlite://{tmp_path}/elsewhere.db:" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was created

    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'store = "sqlite:///{tmp_path}/hub.db"\npublic_url = "https://obshub.example.com"\n')
    env = {"OBSHUB_CONFIG": str(cfg)}
    made = obshub("project", "create", "shop", env=env, cwd=tmp_path)
    assert (
        made.returncode == 0 and made.stderr == f"obshub: no store at sqlite://{tmp_path}/hub.db: creating a new one\n"
    )
    again = obshub("project", "create", "web", env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""  # an existing store: nothing to say
    listed = [json.loads(ln) for ln in obshub("project", "list", env=env, cwd=tmp_path).stdout.splitlines()]
    assert [p["project"] for p in listed] == ["shop", "web"]
    assert listed[0]["dsn"] == json.loads(made.stdout)["dsn"] and listed[0]["dsn"].endswith("@obshub.example.com/1")
    other = obshub("project", "list", env={**env, "OBSHUB_STORE": f"sqlite:///{tmp_path}/other.db"}, cwd=tmp_path)
    assert other.returncode == 1 and "other.db" in other.stderr  # the environment wins over the file
    assert not (tmp_path / "other.db").exists() and not (tmp_path / "obshub-data").exists()


def test_public_url_goes_into_every_dsn_and_is_checked(tmp_path: Path) -> None:
    store = ["--store", f"sqlite:///{tmp_path}/p.db"]
    env = {"OBSHUB_PUBLIC_URL": "https://obshub.example.com/hub/", "OBSHUB_PORT": "9999"}
    made = json.loads(obshub("project", "create", "shop", *store, env=env).stdout)
    assert re.fullmatch(r"https://[0-9a-f]{32}@obshub\.example\.com/hub/1", made["dsn"]), made
    assert json.loads(obshub("project", "list", *store, env=env).stdout)["dsn"] == made["dsn"]
    tok = json.loads(obshub("token", "create", "--project", "shop", "--scope", "sentry", *store, env=env).stdout)
    assert tok["dsn"] == f"https://{tok['token']}@obshub.example.com/hub/1"
    cfg = tmp_path / "hub.toml"
    for bad in (
        "obshub.example.com",
        "ftp://obshub.example.com",
        "https://obshub.example.com/?x=1",
        "https://me@obshub.example.com",
        "http://obshub.example.com:99999",
        "https://obshub.example.com/#top",
    ):
        for cmd in (["project", "list", *store], ["project", "create", "x", *store], ["serve", *store]):
            r = obshub(*cmd, env={"OBSHUB_PUBLIC_URL": bad})
            assert r.returncode == 2 and f"OBSHUB_PUBLIC_URL (public_url): {bad!r}" in r.stderr, (bad, cmd, r.stderr)
        cfg.write_text(f"public_url = {json.dumps(bad)}\n")
        r = obshub("project", "list", *store, env={"OBSHUB_CONFIG": str(cfg)})
        assert r.returncode == 2 and "public_url" in r.stderr, r.stderr
    assert [p["project"] for p in map(json.loads, obshub("project", "list", *store).stdout.splitlines())] == ["shop"]

    # the first start prints the default project's DSN with it too
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "obshub", "serve", "--port", str(port), "--store", f"sqlite:///{tmp_path}/first.db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env({"OBSHUB_PUBLIC_URL": "https://logs.example.org"}),
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        dsn = next(ln.split()[1] for ln in lines if ln.split()[:1] == ["dsn"])
        assert re.fullmatch(r"https://[0-9a-f]{32}@logs\.example\.org/1", dsn), lines
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


# -- export ---------------------------------------------------------------------------------------


def test_export_help_states_the_column_rule() -> None:
    r = obshub("export", "--help")
    assert r.returncode == 0 and "usage: obshub export" in r.stdout
    for words in ("--format {csv,ndjson}", "--columns", "-o FILE", "attrs.<key>", "oldest first"):
        assert words in " ".join(r.stdout.split()), words


def _exported(h: HubProcess, n: int) -> None:
    t0 = time.time() - 600
    lines = [
        {
            "id": f"x-{i:05d}",
            "ts": t0 + i * 0.001,
            "service": "exp",
            "host": f"web-{i % 3}",
            "message": f'row {i}, "quoted"\nsecond line' if i % 100 == 0 else f"row {i}",
            "attrs": {"n": i},
        }
        for i in range(n)
    ]
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
    wrong = obshub(
        "export", "--format", "ndjson", "--columns", "id", "-o", str(out), "--url", h.url, "--token", h.read_token
    )
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
            batch = [
                {"id": f"b{i:06d}", "ts": now - 10_000_000 + i, "message": f"row {i}"} for i in range(b, b + 10_000)
            ]
            store.write_events(h.project_id, [normalize(e, now) for e in batch])
    finally:
        store.close()
    out = tmp_path / "rows.ndjson"
    out.write_text("the previous export\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "obshub",
            "export",
            "--from=-1h",
            "--format",
            "ndjson",
            "-o",
            str(out),
            "--url",
            h.url,
            "--token",
            h.read_token,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
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


def test_trace_of_an_id_with_url_characters(hubproc: HubProcess) -> None:
    h = hubproc
    odd = "a/b?c#d%20e"  # each of / ? # % means something in a URL path
    t = now_us() - 60_000_000
    assert (
        h.ingest(
            [
                event(request_id=odd, host="web-1", message="odd step 1", ts=t),
                event(request_id=odd, host="web-2", message="odd step 2", ts=t + 1000),
                event(request_id="a", host="web-1", message="another request", ts=t),
            ]
        ).json()["accepted"]
        == 3
    )
    env = {"OBSHUB_URL": h.url, "OBSHUB_TOKEN": h.read_token}
    tr = obshub("trace", odd, env=env)
    assert tr.returncode == 0, tr.stderr
    assert tr.stdout.startswith(f"trace {odd}: 2 events, hosts web-1, web-2")
    assert "odd step 2" in tr.stdout and "another request" not in tr.stdout
    js = json.loads(obshub("trace", odd, "--json", env=env).stdout)
    assert js["id"] == odd and [e["message"] for e in js["events"]] == ["odd step 1", "odd step 2"]

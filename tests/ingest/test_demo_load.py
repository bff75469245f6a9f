"""`obshub serve --demo` (what `make run` does) stores the demo through the ingest pipeline: the
Errors page lists its groups with their counts, users and hosts, and `obshub demo` sent to the
same hub afterwards (the same dataset over HTTP) finds only duplicates and changes no group."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obshub.demo import generate
from tests.hubproc import REPO, HubProcess


def groups(hub: HubProcess) -> dict[str, dict[str, Any]]:
    r = hub.get("/api/v1/errors")
    assert r.status_code == 200, r.text
    return {g["title"]: g for g in r.json()["groups"]}


@pytest.fixture
def demo_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """`obshub serve --demo` as a child process, on a store whose project `default` we made (so
    the test holds its tokens); started by the test."""
    h = HubProcess(f"sqlite:///{tmp_path}/hub.db", project="default", log_path=tmp_path / "hub.log", args=("--demo",))
    yield h
    h.stop()


def expected_groups() -> dict[str, dict[str, Any]]:
    """Count, users and hosts of each error of the demo dataset (its shape does not depend on
    the time it is generated for)."""
    out: dict[str, dict[str, Any]] = {}
    for e in generate(time.time_ns() // 1000):
        if e.get("kind") != "error":
            continue
        title = f"{e['error']['type']}: {e['error']['value']}"
        g = out.setdefault(title, {"count": 0, "users": set(), "hosts": set()})
        g["count"] += 1
        g["users"].add(e["user_id"])
        g["hosts"].add(e["host"])
    return {t: {"count": g["count"], "users": len(g["users"]), "hosts": sorted(g["hosts"])} for t, g in out.items()}


def test_serve_demo_lists_the_demo_errors_and_obshub_demo_changes_no_group(demo_hub: HubProcess) -> None:
    # The demo's event ids name the minute they were made in (a re-run later is new data):
    # start early in a minute, so `serve --demo` and `obshub demo` below make the same ids.
    if time.time() % 60 > 25:
        time.sleep(60.5 - time.time() % 60)
    minute = int(time.time() // 60)
    demo_hub.start(timeout=60)
    want = expected_groups()
    assert set(want) == {"KeyError: 'cart'", "TimeoutError: payment provider timed out"}
    got = groups(demo_hub)
    assert set(got) == set(want), (demo_hub.log_path.read_text(), got)
    for title, g in got.items():
        assert {k: g[k] for k in ("count", "users", "hosts")} == want[title], title
        assert g["last_seen"] is not None and g["culprit"] and g["state"] == "unresolved"
    assert got["KeyError: 'cart'"]["users"] == 1 and got["KeyError: 'cart'"]["hosts"] == ["web-2"]

    r = subprocess.run(
        [sys.executable, "-m", "obshub", "demo", "--url", demo_hub.url, "--token", demo_hub.creds["ingest_token"]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    assert int(time.time() // 60) == minute, "the test ran over a minute boundary: rerun it"
    assert ": 0 stored," in r.stdout, r.stdout  # every event was there already
    assert groups(demo_hub) == got  # nothing about any group changed

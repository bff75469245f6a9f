"""One traceback, one group, whichever way it arrives (docs/errors.md), on every backend.

The same real Python exception goes to a live hub five ways: the agent's encoder reading the
log file `logging` wrote (traceback text in `error.stack`), an NDJSON log line whose message
holds the text, an error event whose message holds it, obshub_sdk's JSON line for
`logger.exception` (structured frames: module `__name__`, qualified function names, no source
lines, causes nearest first) and sentry-sdk's event. A real Java stack trace (printed by a
program run with the installed JDK) goes three ways: the agent's log4j multiline event, an
NDJSON message, and traceback text in `error.stack`. Each must land in one group, with a
culprit, and with its frames stored parsed so the error page lists them.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson
import pytest

from obshub_agent.config import InputConfig, MultilineConfig
from obshub_agent.parse import FileEncoder, TimestampParser
from obshub_agent.parse.encode import loads
from obshub_sdk.formatter import JSONFormatter
from tests.ci import unavailable
from tests.hubproc import LiveHub
from tests.web.conftest import login_client

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


# -- the Python bug: three exceptions chained, a method (qualname `Checkout.run`) on top --------


def load(session: dict[str, Any]) -> Any:
    return session["cart"]


def cart_of(session: dict[str, Any]) -> Any:
    try:
        return load(session)
    except KeyError as e:
        raise LookupError("no cart in session") from e


class Checkout:
    def run(self, session: dict[str, Any]) -> Any:
        try:
            return cart_of(session)
        except LookupError as e:
            raise RuntimeError("checkout failed for user 42") from e


def python_failure() -> ExcInfo:
    try:
        Checkout().run({})
    except RuntimeError:
        exc_type, exc, tb = sys.exc_info()
        assert exc_type is not None and exc is not None and tb is not None
        return exc_type, exc, tb
    raise AssertionError("no exception")


JAVA = """package com.shop;

import java.util.HashMap;
import java.util.Map;

public class Orders {
    static Map<String, Integer> stock = new HashMap<>();

    static int reserve(String sku) {
        return stock.get(sku);
    }

    static void place(String sku) {
        try {
            reserve(sku);
        } catch (NullPointerException e) {
            throw new IllegalStateException("order for " + sku + " failed", e);
        }
    }

    public static void main(String[] args) {
        try {
            place("sku-42");
        } catch (RuntimeException e) {
            String now = java.time.ZonedDateTime.now(java.time.ZoneOffset.UTC)
                .format(java.time.format.DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss,SSS"));
            System.out.println(now + " ERROR [main] com.shop.Orders - checkout failed");
            e.printStackTrace(System.out);
        }
    }
}
"""


@pytest.fixture(scope="module")
def java_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A log4j-style error line and the stack trace the JVM printed (`java File.java`)."""
    if shutil.which("java") is None:
        unavailable("java (a JDK) to print a real Java stack trace")
    src = tmp_path_factory.mktemp("java") / "Orders.java"
    src.write_text(JAVA)
    out = subprocess.run(["java", str(src)], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "\tat com.shop.Orders.place(Orders.java:" in out and "Caused by: java.lang.NullPointerException" in out
    return out


def agent_events(inp: InputConfig, data: bytes, host: str) -> list[dict[str, Any]]:
    """What obshub_agent ships for `data` read from a log file (its real encoder)."""
    enc = FileEncoder(
        inp, host=host, uid=f"u-{host}", path="/var/log/app.log", ts=TimestampParser(inp.ts_format, "UTC")
    )
    out: list[bytes] = []
    enc.feed(data, 0, out)
    enc.flush(out)
    return [loads(x) for x in out]


def python_paths(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The same exception as each way sends it, by path name."""
    exc_info = python_failure()
    logger = logging.getLogger("shop.checkout")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "checkout failed", (), exc_info)
    log_file = tmp_path / "app.log"
    log_file.write_text(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record) + "\n")
    (agent,) = agent_events(InputConfig(paths=("/x.log",), format="python"), log_file.read_bytes(), "web-1")
    assert isinstance(agent["error"]["stack"], str)  # the agent ships traceback text
    text = "checkout failed\n" + logging.Formatter().formatException(exc_info)
    sdk = JSONFormatter(service="shop", host="web-4").to_dict(record)
    assert isinstance(sdk["error"]["stack"], list) and any("." in f["function"] for f in sdk["error"]["stack"])

    from sentry_sdk.utils import event_from_exception

    sentry, _ = event_from_exception(exc_info)
    sentry.update(event_id="a" * 32, timestamp=sdk["ts"], platform="python", server_name="web-5")
    return {
        "agent": agent,
        "ndjson message": {"level": "error", "host": "web-2", "message": text},
        "error event message": {"kind": "error", "host": "web-3", "message": text},
        "obshub_sdk": sdk,
        "sentry": sentry,
    }


def java_paths(java_log: str) -> dict[str, dict[str, Any]]:
    inp = InputConfig(paths=("/x.log",), format="log4j", multiline=MultilineConfig(start=r"^\d{4}-\d{2}-\d{2} "))
    (agent,) = agent_events(inp, java_log.encode(), "jvm-1")
    assert agent["level"] == "error" and agent["message"].startswith("checkout failed\njava.lang.IllegalStateException")
    trace = java_log.split("\n", 1)[1]
    return {
        "agent": agent,
        "ndjson message": {"level": "ERROR", "host": "jvm-2", "message": "checkout failed\n" + trace},
        "error.stack text": {
            "host": "jvm-3",
            "error": {"type": "java.lang.IllegalStateException", "value": "order for sku-42 failed", "stack": trace},
        },
    }


def send(hub: LiveHub, paths: dict[str, dict[str, Any]]) -> None:
    for name, ev in paths.items():
        if name == "sentry":
            key = str(hub.creds["dsn"]).split("//", 1)[1].split("@", 1)[0]
            r = httpx.post(
                f"{hub.url}/api/{hub.project_id}/store/",
                content=orjson.dumps(ev),
                headers={"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"},
            )
            assert r.status_code == 200, r.text
        else:
            r = hub.ingest([ev])
            assert r.status_code == 200 and r.json()["accepted"] == 1, (name, r.text)


def occurrences(hub: LiveHub) -> dict[str, list[dict[str, Any]]]:
    by_group: dict[str, list[dict[str, Any]]] = {}
    for e in hub.search_all("kind:error", **{"from": "-30d"}):
        by_group.setdefault(e.get("group_id", "(none)"), []).append(e)
    return by_group


def test_one_python_traceback_is_one_group_whichever_way_it_arrives(hub: LiveHub, tmp_path: Path) -> None:
    paths = python_paths(tmp_path)
    send(hub, paths)
    by_group = occurrences(hub)
    assert len(by_group) == 1, {g: [e["host"] for e in evs] for g, evs in by_group.items()}
    ((gid, evs),) = by_group.items()
    assert len(evs) == len(paths)
    for e in evs:  # stored parsed: frames, innermost `Checkout.run` / `run`, and the chain of causes
        stack = e["error"]["stack"]
        assert isinstance(stack, list) and stack[-1]["function"].endswith("run"), e["host"]
        assert len(e["error"]["chain"]) == 2
    (g,) = hub.get("/api/v1/errors").json()["groups"]
    assert g["id"] == gid and g["count"] == len(paths) and g["type"] == "RuntimeError"
    assert g["culprit"] == "ingest.test_one_traceback in run"
    assert g["title"] == "RuntimeError: checkout failed for user 42"


def test_one_java_stack_trace_is_one_group_and_the_page_lists_its_frames(hub: LiveHub, java_log: str) -> None:
    paths = java_paths(java_log)
    send(hub, paths)
    by_group = occurrences(hub)
    assert len(by_group) == 1, {g: [e["host"] for e in evs] for g, evs in by_group.items()}
    ((gid, evs),) = by_group.items()
    assert len(evs) == len(paths)
    for e in evs:
        frames = e["error"]["stack"]
        assert isinstance(frames, list) and frames[-1] == {
            "module": "com.shop.Orders",
            "function": "place",
            "filename": "Orders.java",
            "lineno": 17,
            "in_app": True,
        }
        assert e["error"]["chain"][0]["type"] == "java.lang.NullPointerException"
    (g,) = hub.get("/api/v1/errors").json()["groups"]
    assert g["id"] == gid and g["culprit"] == "com.shop.Orders in place" and g["count"] == len(paths)
    with login_client(hub) as web:
        html = web.get(f"/errors/{gid}").text
    assert '<ol class="frames">' in html
    assert '<li class="in-app"><code>com.shop.Orders</code> in <code>place</code> line 17' in html

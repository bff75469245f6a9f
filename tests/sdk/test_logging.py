"""configure(): real structlog and real stdlib logging producing the hub's event schema."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import structlog

import obshub_sdk

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_structlog_line_has_schema_keys(sdk_log) -> None:
    structlog.get_logger("shop.cart").info("added item", sku="A-1", qty=2)
    [line] = sdk_log.lines()
    assert list(line)[:6] == ["ts", "level", "message", "logger", "service", "host"]
    assert TS.fullmatch(line["ts"])
    assert line["level"] == "info"
    assert line["message"] == "added item"
    assert line["logger"] == "shop.cart"
    assert (line["service"], line["host"]) == ("svc", "host-1")
    assert line["attrs"] == {"sku": "A-1", "qty": 2}


def test_structlog_levels_map_to_hub_levels(sdk_log) -> None:
    log = structlog.get_logger()
    log.debug("d")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert [x["level"] for x in sdk_log.lines()] == ["debug", "warning", "error", "critical"]


def test_user_fields_named_like_hub_fields_go_to_attrs(sdk_log) -> None:
    # `id` would be the hub's idempotency key and `kind`/`name` would turn a log line into an
    # analytics event; the SDK keeps them out of the top level.
    structlog.get_logger().info("x", id="not-an-event-id", kind="oops", name="bob", level2=1)
    [line] = sdk_log.lines()
    assert "id" not in line and "kind" not in line and "name" not in line
    assert line["attrs"] == {"id": "not-an-event-id", "kind": "oops", "name": "bob", "level2": 1}


def test_bound_correlation_keys_on_structlog_and_stdlib_lines(sdk_log) -> None:
    obshub_sdk.bind(request_id="r-1", trace_id="a" * 32, span_id="b" * 16)
    obshub_sdk.bind_user("u-7", session_id="s-9")
    structlog.get_logger().info("from structlog")
    logging.getLogger("thirdparty").warning("from %s", "stdlib")
    lines = sdk_log.lines()
    assert [x["message"] for x in lines] == ["from structlog", "from stdlib"]
    for line in lines:
        assert line["request_id"] == "r-1"
        assert line["trace_id"] == "a" * 32
        assert line["span_id"] == "b" * 16
        assert (line["user_id"], line["session_id"]) == ("u-7", "s-9")
    assert lines[1]["logger"] == "thirdparty"


def test_explicit_key_in_log_call_wins_over_context(sdk_log) -> None:
    obshub_sdk.bind_user("u-1")
    structlog.get_logger().info("acting as admin", user_id="admin")
    assert sdk_log.lines()[0]["user_id"] == "admin"


def test_stdlib_extra_levels_and_bad_format_args(sdk_log) -> None:
    log = logging.getLogger("lib")
    log.info("paid", extra={"amount": 12.5, "user_id": "u-3"})
    log.log(25, "custom level")  # between INFO and WARNING
    # pytest's own capture handler re-raises formatting errors; leave only the SDK's handler.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if not getattr(h, "_obshub_sdk", False)]:
        root.removeHandler(handler)
    log.error("broken %d", "not-a-number")  # must not raise, must still produce a line
    paid, custom, broken = sdk_log.lines()
    assert paid["attrs"] == {"amount": 12.5}
    assert paid["user_id"] == "u-3"
    assert custom["level"] == "warning"
    assert broken["level"] == "error" and "broken" in broken["message"]
    assert TS.fullmatch(paid["ts"])


def _fail_inner() -> None:
    json.loads("{not json")


def test_exception_chain_is_structured(sdk_log) -> None:
    try:
        try:
            _fail_inner()
        except ValueError as exc:
            raise RuntimeError("config unreadable") from exc
    except RuntimeError:
        structlog.get_logger().exception("startup failed")
    [line] = sdk_log.lines()
    assert line["level"] == "error"
    error = line["error"]
    assert error["type"] == "RuntimeError"
    assert error["value"] == "config unreadable"
    [cause] = error["chain"]
    assert cause["relation"] == "cause"
    assert cause["type"] == "json.decoder.JSONDecodeError"
    frames = cause["stack"]
    assert set(frames[0]) == {"module", "function", "filename", "lineno", "in_app"}
    ours = [f for f in frames if f["function"] == "_fail_inner"]
    assert ours and ours[0]["in_app"] is True and ours[0]["module"] == __name__
    stdlib = [f for f in frames if f["filename"].endswith(os.path.join("json", "decoder.py"))]
    assert stdlib and all(f["in_app"] is False for f in stdlib)
    assert frames[-1]["filename"].endswith("decoder.py")  # innermost frame last


def test_implicit_context_chain_and_stdlib_exc_info(sdk_log) -> None:
    try:
        try:
            {}["missing"]
        except KeyError:
            raise ValueError("while handling")  # noqa: B904 - the implicit chain is the point
    except ValueError:
        logging.getLogger("lib").exception("handled")
    [line] = sdk_log.lines()
    assert line["error"]["type"] == "ValueError"
    assert line["error"]["chain"][0] == {**line["error"]["chain"][0], "type": "KeyError", "relation": "context"}


def test_level_filters_structlog_and_stdlib(tmp_path: Path, unconfigure) -> None:
    path = tmp_path / "x.jsonl"
    obshub_sdk.configure(service="svc", path=path, level="warning")
    structlog.get_logger().info("dropped")
    logging.getLogger("lib").info("dropped too")
    structlog.get_logger().warning("kept")
    obshub_sdk.track("signup", plan="free")  # analytics events ignore the log level
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["message"] for x in lines] == ["kept", "signup"]


def test_track_is_an_analytics_event(sdk_log) -> None:
    obshub_sdk.bind_user("u-5")
    obshub_sdk.track("checkout", plan="pro", items=3)
    obshub_sdk.track("invite_sent", distinct_id=42, channel="mail")
    first, second = sdk_log.lines()
    assert first["kind"] == "event" and first["name"] == "checkout"
    assert first["attrs"] == {"plan": "pro", "items": 3}
    assert first["user_id"] == "u-5"
    assert second["user_id"] == "42" and second["name"] == "invite_sent"


def test_unserializable_values_never_break_a_call(sdk_log) -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd!"

    log = structlog.get_logger()
    log.info("objects", obj=Odd(), big=2**80, keys={(1, 2): "tuple key"}, data=b"\xff")
    [line] = sdk_log.lines()
    assert line["attrs"]["obj"] == "odd!"
    assert line["attrs"]["big"] == 2**80


def test_reconfigure_points_existing_loggers_at_new_file(tmp_path: Path, unconfigure) -> None:
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    obshub_sdk.configure(service="one", path=first)
    log = structlog.get_logger()
    log.info("a")
    obshub_sdk.configure(service="two", path=second)
    log.info("b")
    logging.getLogger().info("c")
    assert [json.loads(x)["message"] for x in first.read_text().splitlines()] == ["a"]
    lines = [json.loads(x) for x in second.read_text().splitlines()]
    assert [(x["message"], x["service"]) for x in lines] == [("b", "two"), ("c", "two")]
    assert len([h for h in logging.getLogger().handlers if getattr(h, "_obshub_sdk", False)]) == 1


def test_stdout_is_the_default_sink(capsys, unconfigure) -> None:
    obshub_sdk.configure(service="svc")
    structlog.get_logger().info("to stdout")
    line = json.loads(capsys.readouterr().out)
    assert line["message"] == "to stdout"


def test_text_stream_sink(unconfigure) -> None:
    buf = io.StringIO()
    obshub_sdk.configure(service="svc", path=buf)
    logging.getLogger("x").info("ünïcode ✓")
    assert json.loads(buf.getvalue())["message"] == "ünïcode ✓"


def test_lines_from_many_threads_never_interleave(sdk_log) -> None:
    log = structlog.get_logger()
    std = logging.getLogger("threads")

    def work(n: int) -> None:
        obshub_sdk.bind(request_id=f"t{n}")
        for i in range(300):
            if i % 2:
                log.info("line", n=n, i=i)
            else:
                std.info("line", extra={"n": n, "i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = sdk_log.lines()  # json.loads of every line: a torn line fails here
    assert len(lines) == 8 * 300
    assert all(x["request_id"] == f"t{x['attrs']['n']}" for x in lines)


def test_structlog_contextvars_opt_in(tmp_path: Path, unconfigure) -> None:
    path = tmp_path / "x.jsonl"
    obshub_sdk.configure(service="svc", path=path, structlog_contextvars=True)
    structlog.contextvars.bind_contextvars(tenant="acme", user_id="u-9")
    try:
        structlog.get_logger().info("hi")
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(path.read_text())
    assert line["attrs"] == {"tenant": "acme"} and line["user_id"] == "u-9"


def test_host_defaults_from_environment(tmp_path: Path, monkeypatch, unconfigure) -> None:
    monkeypatch.setenv("OBSHUB_SDK_HOST", "web-7")
    path = tmp_path / "x.jsonl"
    obshub_sdk.configure(service="svc", path=path, env="prod", release="1.2.3")
    logging.getLogger("x").warning("w")
    line = json.loads(path.read_text())
    assert (line["host"], line["env"], line["release"]) == ("web-7", "prod", "1.2.3")


def test_bad_arguments_fail_fast(unconfigure) -> None:
    with pytest.raises(ValueError, match="level"):
        obshub_sdk.configure(service="svc", level="loud")
    with pytest.raises(ValueError, match="service"):
        obshub_sdk.configure(service="")


def test_works_without_structlog(tmp_path: Path) -> None:
    # A real interpreter in which `import structlog` fails, as on a host without it installed.
    path = tmp_path / "x.jsonl"
    code = f"""
import sys
sys.modules["structlog"] = None
import logging, obshub_sdk
obshub_sdk.configure(service="plain", path={str(path)!r})
obshub_sdk.bind_user("u-1")
logging.getLogger("app").info("no structlog here", extra={{"k": 1}})
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("app").exception("math")
obshub_sdk.track("ping")
assert "obshub_sdk._structlog" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["message"] for x in lines] == ["no structlog here", "math", "ping"]
    assert all(x["service"] == "plain" and x["user_id"] == "u-1" for x in lines)
    assert lines[0]["attrs"] == {"k": 1}
    assert lines[1]["error"]["type"] == "ZeroDivisionError"
    assert lines[2]["kind"] == "event"


def test_json_formatter_standalone_in_dictconfig() -> None:
    buf = io.StringIO()
    logger = logging.getLogger("standalone.test")
    handler = logging.StreamHandler(buf)
    handler.setFormatter(obshub_sdk.JSONFormatter(service="svc", host="h"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("plain handler")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = json.loads(buf.getvalue())
    assert (line["message"], line["service"], line["host"]) == ("plain handler", "svc", "h")


def test_oversized_values_are_cut_to_what_the_hub_accepts(sdk_log) -> None:
    # The hub rejects attr strings over 16 KiB and messages over 256 KiB; a rejected line would
    # be lost, so the SDK cuts them (on a UTF-8 boundary) and says so.
    structlog.get_logger().info("m" * 300_000, blob="é" * 20_000, small="ok")
    logging.getLogger("lib").info("x", extra={"blob": "x" * 40_000})
    first, second = sdk_log.lines()
    assert len(first["message"].encode()) <= 256 * 1024
    assert first["message"].endswith("…[cut by obshub_sdk]")
    assert len(first["attrs"]["blob"].encode()) <= 16 * 1024
    assert first["attrs"]["blob"].startswith("éé") and first["attrs"]["small"] == "ok"
    assert len(second["attrs"]["blob"].encode()) <= 16 * 1024


def test_top_level_values_are_strings_the_hub_accepts(sdk_log) -> None:
    structlog.get_logger().info("numbers", user_id=42, session_id=None, host=True)
    logging.getLogger("lib").info("extra", extra={"user_id": 7, "request_id": None})
    first, second = sdk_log.lines()
    assert first["user_id"] == "42" and "session_id" not in first and first["host"] == "True"
    assert second["user_id"] == "7" and "request_id" not in second


def test_logger_without_a_name_has_no_logger_key(sdk_log) -> None:
    structlog.get_logger().info("anonymous")
    assert "logger" not in sdk_log.lines()[0]


def test_in_app_modules_mark_installed_app_code(tmp_path: Path, unconfigure) -> None:
    # `json` stands in for an app installed into site-packages: not app code by path rules.
    path = tmp_path / "x.jsonl"
    obshub_sdk.configure(service="svc", path=path, in_app_modules=["json"])
    try:
        json.loads("{bad")
    except ValueError:
        logging.getLogger("x").exception("parse")
    obshub_sdk.configure(service="svc", path=path)  # and back: the cache is reset
    try:
        json.loads("{bad")
    except ValueError:
        logging.getLogger("x").exception("parse")
    first, second = (json.loads(x)["error"]["stack"] for x in path.read_text().splitlines())
    json_frames = [f["in_app"] for f in first if f["module"].startswith("json")]
    assert json_frames and all(json_frames)
    assert not any(f["in_app"] for f in second if f["module"].startswith("json"))

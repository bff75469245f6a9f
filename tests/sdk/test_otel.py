"""obshub_sdk next to OpenTelemetry in one app: a line logged inside an active OTel span carries
that span's trace and span ids (so the hub puts it on the span's bar), outside any span the SDK's
own ids; the SDK never imports OpenTelemetry itself."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import structlog
from opentelemetry.sdk.trace import TracerProvider

import obshub_sdk


def test_lines_inside_an_otel_span_carry_its_ids(sdk_log) -> None:
    tracer = TracerProvider().get_tracer("shop")  # not the global provider: nothing leaks
    obshub_sdk.bind(request_id="r-1", trace_id="a" * 32, span_id="b" * 16)
    structlog.get_logger().info("before")
    with tracer.start_as_current_span("checkout") as outer:
        structlog.get_logger().info("in checkout")
        with tracer.start_as_current_span("SELECT orders") as inner:
            logging.getLogger("db").warning("slow query")
            structlog.get_logger().info("explicit", span_id="c" * 16)  # a key in the call still wins
    logging.getLogger("db").info("after")
    before, in_outer, in_inner, explicit, after = sdk_log.lines()
    o, i = outer.get_span_context(), inner.get_span_context()
    assert (before["trace_id"], before["span_id"]) == ("a" * 32, "b" * 16)
    assert (in_outer["trace_id"], in_outer["span_id"]) == (f"{o.trace_id:032x}", f"{o.span_id:016x}")
    assert (in_inner["trace_id"], in_inner["span_id"]) == (f"{i.trace_id:032x}", f"{i.span_id:016x}")
    assert explicit["span_id"] == "c" * 16 and explicit["trace_id"] == f"{i.trace_id:032x}"
    assert (after["trace_id"], after["span_id"]) == ("a" * 32, "b" * 16)
    assert all(x["request_id"] == "r-1" for x in sdk_log.lines())  # OTel has none: the SDK's stays


def test_the_sdk_does_not_import_opentelemetry(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    code = (
        "import sys, logging, obshub_sdk\n"
        f"obshub_sdk.configure(service='plain', path={str(path)!r})\n"
        "obshub_sdk.bind(trace_id='d' * 32)\n"
        "logging.getLogger('x').warning('no otel here')\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    [line] = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["trace_id"] == "d" * 32 and "span_id" not in line

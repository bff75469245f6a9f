"""OTLP/HTTP from the real OpenTelemetry Python SDK (docs/otlp.md), on both stores.

The SDK is configured the way its users do it: `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at the
hub's `/otlp` prefix and the token in `OTEL_EXPORTER_OTLP_HEADERS` (URL-encoded, as the spec of
that variable wants), a `LoggingHandler` on a stdlib logger and a tracer, both exporting protobuf
over HTTP. What they send must be searchable with every mapped field, the spans listed by the trace
API, and an exception logged through OTel must land in the same error group as the same traceback
sent by the Sentry SDK.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.hubproc import LiveHub
from tests.ingest.test_one_traceback import python_failure

RESOURCE = {
    "service.name": "shop",
    "host.name": "web-7",
    "deployment.environment.name": "prod",
    "service.version": "1.2.3",
    "service.instance.id": "shop-7a",
}


@dataclass
class Otel:
    logger: logging.Logger
    tracer_provider: TracerProvider


@pytest.fixture
def otel(hub: LiveHub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Otel]:
    """A LoggingHandler and a tracer exporting to the live hub, configured by the environment."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{hub.url}/otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{hub.ingest_token}")
    resource = Resource.create(RESOURCE)
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
    traces = TracerProvider(resource=resource)
    traces.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    logger = logging.getLogger(f"shop.checkout.{id(hub)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    with warnings.catch_warnings():  # deprecated for opentelemetry-instrumentation-logging's: the same exporter path
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=logs)
    logger.addHandler(handler)
    yield Otel(logger, traces)
    logger.removeHandler(handler)
    logs.shutdown()
    traces.shutdown()


def _one(hub: LiveHub, q: str) -> dict[str, Any]:
    found = hub.search_all(q, **{"from": "-1d"})
    assert len(found) == 1, (q, found)
    return found[0]


def test_logs_and_spans_of_the_otel_sdk_are_stored_mapped(hub: LiveHub, otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("shop.web")
    with (
        tracer.start_as_current_span(
            "GET /cart/{id}",
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "GET", "http.route": "/cart/{id}", "http.response.status_code": 200},
        ) as server,
        tracer.start_as_current_span("SELECT carts") as child,
    ):
        child.set_attribute("db.system", "postgresql")
        otel.logger.warning("cart is big", extra={"enduser.id": "u-42", "session.id": "s-9", "cart.items": 31})
    # obshub's own names, as an app logging `extra=` for obshub_sdk or the agent has them
    otel.logger.info("own names", extra={"user_id": "u-7", "request_id": "req-7", "session_id": "s-7"})
    otel.logger.info("two names", extra={"enduser.id": "u-8", "user_id": "u-other"})
    ctx, child_ctx = server.get_span_context(), child.get_span_context()
    trace_id, span_id = f"{ctx.trace_id:032x}", f"{child_ctx.span_id:016x}"

    line = _one(hub, '"cart is big"')
    assert line["kind"] == "log" and line["level"] == "warning"
    assert (line["service"], line["host"], line["env"], line["release"]) == ("shop", "web-7", "prod", "1.2.3")
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)  # the log ran inside the child span
    assert (line["user_id"], line["session_id"]) == ("u-42", "s-9")
    assert line["logger"] == otel.logger.name
    assert line["attrs"]["cart.items"] == 31 and line["attrs"]["service.instance.id"] == "shop-7a"
    assert "enduser.id" not in line["attrs"]
    own = _one(hub, '"own names"')
    assert (own["user_id"], own["request_id"], own["session_id"]) == ("u-7", "req-7", "s-7")
    assert not {"user_id", "request_id", "session_id"} & set(own["attrs"])
    two = _one(hub, '"two names"')
    assert (two["user_id"], two["attrs"]["user_id"]) == ("u-8", "u-other")  # the first name wins, the other kept

    spans = {e["name"]: e for e in hub.search_all(f"kind:span trace_id:{trace_id}", **{"from": "-1d"})}
    assert set(spans) == {"GET /cart/{id}", "SELECT carts"}
    top, db = spans["GET /cart/{id}"], spans["SELECT carts"]
    assert top["span_id"] == f"{ctx.span_id:016x}" and top["service"] == "shop" and top["level"] == "info"
    assert top["attrs"]["span.kind"] == "server" and top["attrs"]["span.status"] == "unset"
    # An HTTP server span carries what request-level views read (as obshub_sdk's access lines).
    assert (top["attrs"]["method"], top["attrs"]["path"], top["attrs"]["status"]) == ("GET", "/cart/{id}", 200)
    assert top["attrs"]["duration_ms"] >= db["attrs"]["duration_ms"] >= 0
    assert db["attrs"]["span.parent_id"] == top["span_id"] and "span.parent_id" not in top["attrs"]
    assert db["attrs"]["span.kind"] == "internal" and db["attrs"]["db.system"] == "postgresql"

    # The trace API lists the spans with the log line between them.
    r = hub.get(f"/api/v1/trace/{trace_id}", **{"from": "-1d"})
    assert r.status_code == 200, r.text
    kinds = sorted(e["kind"] for e in r.json()["events"])
    assert kinds == ["log", "span", "span"]


def test_an_exception_on_a_span_is_an_error_linked_to_the_span(hub: LiveHub, otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("shop.web")
    with tracer.start_as_current_span("pay", record_exception=False) as span:
        try:
            raise RuntimeError("card declined")
        except RuntimeError as e:
            span.record_exception(e)
            span.set_status(Status(StatusCode.ERROR, "card declined"))
    trace_id, span_id = f"{span.get_span_context().trace_id:032x}", f"{span.get_span_context().span_id:016x}"
    err = _one(hub, "kind:error")
    assert (err["trace_id"], err["span_id"], err["name"]) == (trace_id, span_id, "pay")
    assert err["message"] == "RuntimeError: card declined" and err["group_id"]
    assert err["error"]["stack"][-1]["function"] == "test_an_exception_on_a_span_is_an_error_linked_to_the_span"
    span_ev = _one(hub, "kind:span")
    assert span_ev["level"] == "error" and span_ev["attrs"]["span.status"] == "error"
    assert span_ev["attrs"]["span.status_message"] == "card declined"
    group = hub.get(f"/api/v1/errors/{err['group_id']}").json()
    assert group["occurrences"][0]["trace_id"] == trace_id


def test_an_exception_logged_through_otel_groups_with_the_same_traceback_from_sentry(hub: LiveHub, otel: Otel) -> None:
    from sentry_sdk.utils import event_from_exception

    exc_info = python_failure()
    otel.logger.error("checkout failed", exc_info=exc_info)
    sentry, _ = event_from_exception(exc_info)
    sentry.update(event_id="a" * 32, platform="python", server_name="web-5")
    r = httpx.post(
        f"{hub.url}/api/{hub.project_id}/store/",
        content=orjson.dumps(sentry),
        headers={"X-Sentry-Auth": f"Sentry sentry_key={hub.sentry_key}, sentry_version=7"},
    )
    assert r.status_code == 200, r.text
    errors = hub.search_all("kind:error", **{"from": "-1d"})
    assert sorted(e["host"] for e in errors) == ["web-5", "web-7"]
    assert len({e["group_id"] for e in errors}) == 1, [(e["host"], e["group_id"]) for e in errors]
    otel_err = next(e for e in errors if e["host"] == "web-7")
    assert otel_err["message"] == "checkout failed" and otel_err["error"]["type"] == "RuntimeError"
    assert len(otel_err["error"]["chain"]) == 2  # the causes, parsed from the traceback text

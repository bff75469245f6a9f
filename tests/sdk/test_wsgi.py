"""WSGI CorrelationMiddleware: real Flask and a plain WSGI app under real servers (werkzeug's
threaded server, stdlib wsgiref), real requests/httpx calls."""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from wsgiref.simple_server import WSGIRequestHandler, make_server

import flask
import httpx
import requests
import structlog

import obshub_sdk
from obshub_sdk.asgi import CorrelationMiddleware as ASGICorrelation
from obshub_sdk.requests_adapter import CorrelationAdapter, instrument_session
from obshub_sdk.wsgi import CorrelationMiddleware

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HEX32 = re.compile(r"[0-9a-f]{32}")


def _access(line: dict) -> bool:
    return line.get("logger") == "obshub_sdk.access"


def make_flask(downstream: str | None = None) -> flask.Flask:
    app = flask.Flask("flask_svc")
    session = instrument_session()

    @app.get("/order/<int:n>")
    def order(n: int):  # type: ignore[no-untyped-def]
        obshub_sdk.bind_user(f"user-{n}")
        logging.getLogger("orders").info("order placed", extra={"n": n})
        body = {"me": obshub_sdk.current()}
        if downstream:
            body["down"] = session.get(f"{downstream}/order/{n}").json()["me"]
        return body

    @app.get("/pool")
    def pool():  # type: ignore[no-untyped-def]
        obshub_sdk.bind_user("pool-user")
        with ThreadPoolExecutor(2) as ex:
            list(ex.map(obshub_sdk.carry_context(lambda i: structlog.get_logger().info("job", i=i)), range(4)))
        return "ok"

    @app.get("/fail")
    def fail():  # type: ignore[no-untyped-def]
        raise KeyError("missing-thing")

    app.wsgi_app = CorrelationMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def test_flask_ids_header_and_access_line(sdk_log, serve_wsgi) -> None:
    base = serve_wsgi(make_flask())
    resp = requests.get(
        f"{base}/order/7", headers={"traceparent": f"00-{TRACE}-{PARENT}-01", "X-Request-ID": "front-7"}, timeout=10
    )
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "front-7"
    me = resp.json()["me"]
    assert me["trace_id"] == TRACE and me["span_id"] != PARENT and me["user_id"] == "user-7"
    placed = sdk_log.wait_for(lambda x: x["message"] == "order placed")
    access = sdk_log.wait_for(_access)
    assert placed["request_id"] == access["request_id"] == "front-7"
    assert access["user_id"] == "user-7"
    assert access["message"] == "GET /order/7 200"
    assert access["attrs"]["parent_span_id"] == PARENT


def test_flask_to_flask_with_requests_adapter(sdk_log, serve_wsgi) -> None:
    back = serve_wsgi(make_flask())
    front = serve_wsgi(make_flask(downstream=back))
    resp = requests.get(f"{front}/order/3", timeout=10)
    body = resp.json()
    me, down = body["me"], body["down"]
    assert me["trace_id"] == down["trace_id"] and me["request_id"] == down["request_id"]
    assert me["span_id"] != down["span_id"]
    assert resp.headers["X-Request-ID"] == me["request_id"]
    sdk_log.wait_for(lambda x: len([y for y in sdk_log.lines() if _access(y)]) == 2)
    traced = [x for x in sdk_log.lines() if x.get("trace_id") == me["trace_id"]]
    spans = {x["span_id"] for x in traced if x["message"] == "order placed"}
    assert spans == {me["span_id"], down["span_id"]}


def test_malformed_headers_on_wsgi(sdk_log, serve_wsgi) -> None:
    base = serve_wsgi(make_flask())
    resp = requests.get(f"{base}/order/1", headers={"traceparent": "00-nope", "X-Request-ID": "a" * 500}, timeout=10)
    assert resp.status_code == 200
    me = resp.json()["me"]
    assert HEX32.fullmatch(me["trace_id"]) and HEX32.fullmatch(resp.headers["X-Request-ID"])


def test_thread_pool_inside_flask_request(sdk_log, serve_wsgi) -> None:
    base = serve_wsgi(make_flask())
    rid = requests.get(f"{base}/pool", timeout=10).headers["X-Request-ID"]
    jobs = [x for x in sdk_log.lines() if x["message"] == "job"]
    assert len(jobs) == 4
    assert all(x["request_id"] == rid and x["user_id"] == "pool-user" for x in jobs)


def test_flask_error_is_logged_with_request_ids(sdk_log, serve_wsgi) -> None:
    base = serve_wsgi(make_flask())
    resp = requests.get(f"{base}/fail", headers={"X-Request-ID": "f-1"}, timeout=10)
    assert resp.status_code == 500 and resp.headers["X-Request-ID"] == "f-1"
    # Flask logs the exception itself (inside the request, so with its ids) and answers 500.
    flask_line = sdk_log.wait_for(lambda x: x.get("error", {}).get("type") == "KeyError")
    assert flask_line["request_id"] == "f-1"
    access = sdk_log.wait_for(_access)
    assert access["attrs"]["status"] == 500 and access["level"] == "error"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        pass


def test_streaming_body_logs_inside_request_context(sdk_log) -> None:
    """A plain WSGI app under stdlib wsgiref: lines logged while the server iterates the body
    carry the request's ids, and the access line comes after the last chunk."""

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Request-ID", "spoofed")])

        def body():  # type: ignore[no-untyped-def]
            for i in range(3):
                structlog.get_logger("stream").info("chunk", i=i)
                yield b"x"

        return body()

    server = make_server("127.0.0.1", 0, CorrelationMiddleware(app), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        resp = httpx.get(f"http://127.0.0.1:{server.server_port}/stream", headers={"X-Request-ID": "stream-1"})
        # Our id replaced the app's header rather than being sent twice.
        assert resp.headers.get_list("x-request-id") == ["stream-1"]
        assert resp.text == "xxx"
        sdk_log.wait_for(_access)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
    lines = [x for x in sdk_log.lines() if x["logger"] in ("stream", "obshub_sdk.access")]
    assert [x["message"] for x in lines] == ["chunk", "chunk", "chunk", "GET /stream 200"]
    assert all(x["request_id"] == "stream-1" for x in lines)
    assert obshub_sdk.current() == {}  # nothing leaked into the test's own context


def test_requests_adapter_respects_explicit_headers(sdk_log, serve_asgi) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"rid": request.headers.get("x-request-id"), "tp": request.headers.get("traceparent")})

    base = serve_asgi(ASGICorrelation(Starlette(routes=[Route("/", echo)])))
    session = requests.Session()
    session.mount("http://", CorrelationAdapter())
    with obshub_sdk.start_trace(request_id="job-1") as fields:
        auto = session.get(base, timeout=10).json()
        explicit = session.get(base, headers={"X-Request-ID": "mine"}, timeout=10).json()
    assert auto["rid"] == "job-1" and fields["trace_id"] in auto["tp"]
    assert explicit["rid"] == "mine"


def test_concurrent_wsgi_requests_keep_their_own_ids(sdk_log, serve_wsgi) -> None:
    import time

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        n = environ["PATH_INFO"].rsplit("/", 1)[-1]
        obshub_sdk.bind_user(f"user-{n}")
        time.sleep(0.002 * (int(n) % 5))  # interleave the werkzeug worker threads
        structlog.get_logger("conc").info("work", n=n)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [n.encode()]

    base = serve_wsgi(CorrelationMiddleware(app))

    def call(n: int) -> str:
        resp = requests.get(f"{base}/w/{n}", headers={"X-Request-ID": f"w-{n}"}, timeout=10)
        return str(resp.headers["X-Request-ID"])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(call, range(24))) == [f"w-{n}" for n in range(24)]
    sdk_log.wait_for(lambda x: len([y for y in sdk_log.lines() if _access(y)]) == 24)
    lines = [x for x in sdk_log.lines() if x["logger"] in ("conc", "obshub_sdk.access")]
    assert len(lines) == 48
    for line in lines:
        n = line["request_id"].removeprefix("w-")
        assert line["user_id"] == f"user-{n}"

"""ASGI CorrelationMiddleware: real Starlette under real uvicorn, real httpx clients."""

from __future__ import annotations

import asyncio
import contextlib
import re

import httpx
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import obshub_sdk
from obshub_sdk.asgi import CorrelationMiddleware
from obshub_sdk.propagation import httpx_async_event_hooks, httpx_event_hooks

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HEX32 = re.compile(r"[0-9a-f]{32}")


def _access(line: dict) -> bool:
    return line.get("logger") == "obshub_sdk.access"


def make_app() -> CorrelationMiddleware:
    log = structlog.get_logger("app")

    async def hello(request: Request) -> JSONResponse:
        log.info("hello handler")
        return JSONResponse(obshub_sdk.current())

    async def login(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0.01)
        obshub_sdk.bind_user(request.query_params["user"], "sess-1")
        await asyncio.sleep(0.01)
        log.info("logged in")
        return PlainTextResponse("ok")

    def sync_login(request: Request) -> PlainTextResponse:  # runs in Starlette's threadpool
        obshub_sdk.bind_user("thread-user")
        log.info("sync handler")
        return PlainTextResponse("ok")

    async def boom(request: Request) -> PlainTextResponse:
        log.info("about to fail")
        raise RuntimeError("kaput")

    async def slow(request: Request) -> PlainTextResponse:
        n = request.path_params["n"]
        await asyncio.sleep(0.005 * (int(n) % 4))
        log.info("slow", n=n)
        return PlainTextResponse(n)

    routes = [
        Route("/hello", hello),
        Route("/login", login),
        Route("/sync-login", sync_login),
        Route("/boom", boom),
        Route("/slow/{n}", slow),
    ]
    # Outermost, so even Starlette's own 500 page carries X-Request-ID.
    return CorrelationMiddleware(Starlette(routes=routes))


def test_generates_ids_echoes_header_and_logs_access(sdk_log, serve_asgi) -> None:
    base = serve_asgi(make_app())
    resp = httpx.get(f"{base}/hello?secret=token")
    assert resp.status_code == 200
    rid = resp.headers["x-request-id"]
    assert HEX32.fullmatch(rid)
    bound = resp.json()
    assert bound["request_id"] == rid and HEX32.fullmatch(bound["trace_id"])
    handler = sdk_log.wait_for(lambda x: x["message"] == "hello handler")
    access = sdk_log.wait_for(_access)
    for line in (handler, access):
        assert (line["request_id"], line["trace_id"], line["span_id"]) == (rid, bound["trace_id"], bound["span_id"])
    assert access["message"] == "GET /hello 200"
    assert access["level"] == "info"
    attrs = access["attrs"]
    assert (attrs["method"], attrs["path"], attrs["status"]) == ("GET", "/hello", 200)
    assert attrs["duration_ms"] >= 0
    assert "secret" not in str(access)  # query strings are never logged


def test_continues_incoming_trace_with_child_span(sdk_log, serve_asgi) -> None:
    base = serve_asgi(make_app())
    resp = httpx.get(f"{base}/hello", headers={"traceparent": f"00-{TRACE}-{PARENT}-01", "x-request-id": "edge-42"})
    bound = resp.json()
    assert resp.headers["x-request-id"] == "edge-42"
    assert bound["trace_id"] == TRACE and bound["request_id"] == "edge-42"
    assert bound["span_id"] != PARENT
    access = sdk_log.wait_for(_access)
    assert access["attrs"]["parent_span_id"] == PARENT


def test_malformed_and_oversized_headers_start_fresh(sdk_log, serve_asgi) -> None:
    base = serve_asgi(make_app())
    bad = [
        {"traceparent": "00-zzzz-not-a-trace", "x-request-id": "x" * 129},
        {"traceparent": f"00-{'0' * 32}-{PARENT}-01", "x-request-id": "bad id; drop table"},
        {"traceparent": "00-" + "g" * 600, "x-request-id": "ünïcode"},
    ]
    for headers in bad:
        resp = httpx.get(f"{base}/hello", headers={k: v.encode("utf-8") for k, v in headers.items()})
        assert resp.status_code == 200
        bound = resp.json()
        assert HEX32.fullmatch(bound["trace_id"]) and bound["trace_id"] != "0" * 32
        assert HEX32.fullmatch(resp.headers["x-request-id"])
        assert bound["request_id"] == resp.headers["x-request-id"]


def test_user_bound_after_await_reaches_later_lines_and_access(sdk_log, serve_asgi) -> None:
    base = serve_asgi(make_app())
    resp = httpx.get(f"{base}/login?user=alice")
    rid = resp.headers["x-request-id"]
    line = sdk_log.wait_for(lambda x: x["message"] == "logged in")
    access = sdk_log.wait_for(_access)
    assert (line["user_id"], line["session_id"], line["request_id"]) == ("alice", "sess-1", rid)
    assert (access["user_id"], access["session_id"]) == ("alice", "sess-1")


def test_user_bound_in_threadpool_endpoint_reaches_access_line(sdk_log, serve_asgi) -> None:
    base = serve_asgi(make_app())
    rid = httpx.get(f"{base}/sync-login").headers["x-request-id"]
    line = sdk_log.wait_for(lambda x: x["message"] == "sync handler")
    access = sdk_log.wait_for(_access)
    assert line["request_id"] == rid and line["user_id"] == "thread-user"
    assert access["request_id"] == rid and access["user_id"] == "thread-user"


def test_crash_is_logged_with_ids_and_error(sdk_log, serve_asgi) -> None:
    base = serve_asgi(make_app())
    resp = httpx.get(f"{base}/boom", headers={"x-request-id": "crash-1"})
    assert resp.status_code == 500
    assert resp.headers["x-request-id"] == "crash-1"
    access = sdk_log.wait_for(_access)
    assert access["level"] == "error" and access["attrs"]["status"] == 500
    assert access["request_id"] == "crash-1"
    assert access["error"]["type"] == "RuntimeError" and access["error"]["value"] == "kaput"
    assert any(f["function"].endswith("boom") and f["in_app"] for f in access["error"]["stack"])


def test_concurrent_requests_keep_their_own_ids(sdk_log, serve_asgi) -> None:
    base = serve_asgi(make_app())

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            resps = await asyncio.gather(
                *(client.get(f"{base}/slow/{n}", headers={"x-request-id": f"req-{n}"}) for n in range(24))
            )
        assert [r.headers["x-request-id"] for r in resps] == [f"req-{n}" for n in range(24)]

    asyncio.run(main())
    sdk_log.wait_for(lambda x: len([y for y in sdk_log.lines() if _access(y)]) == 24)
    slow = [x for x in sdk_log.lines() if x["message"] == "slow"]
    assert len(slow) == 24
    assert all(x["request_id"] == f"req-{x['attrs']['n']}" for x in slow)
    traces = {x["trace_id"] for x in slow}
    assert len(traces) == 24  # no header: each request is its own trace


def test_httpx_hooks_carry_the_trace_between_two_live_apps(sdk_log, serve_asgi) -> None:
    """Service A (async httpx hook) calls service B (sync httpx hook from a thread) which calls
    service C: one trace, one request id, a new span per hop, parents chained."""
    log = structlog.get_logger("chain")

    async def leaf(request: Request) -> JSONResponse:
        log.info("leaf")
        return JSONResponse(obshub_sdk.current())

    leaf_url = serve_asgi(CorrelationMiddleware(Starlette(routes=[Route("/", leaf)])))

    def middle(request: Request) -> JSONResponse:  # sync endpoint: threadpool, sync client
        log.info("middle")
        with httpx.Client(event_hooks=httpx_event_hooks()) as client:
            down = client.get(leaf_url).json()
        return JSONResponse({"me": obshub_sdk.current(), "down": down})

    middle_url = serve_asgi(CorrelationMiddleware(Starlette(routes=[Route("/", middle)])))

    async def edge(request: Request) -> JSONResponse:
        obshub_sdk.bind_user("carol")
        log.info("edge")
        async with httpx.AsyncClient(event_hooks=httpx_async_event_hooks()) as client:
            down = (await client.get(middle_url)).json()
        return JSONResponse({"me": obshub_sdk.current(), "down": down})

    edge_url = serve_asgi(CorrelationMiddleware(Starlette(routes=[Route("/", edge)])))

    body = httpx.get(edge_url).json()
    a, b, c = body["me"], body["down"]["me"], body["down"]["down"]
    assert a["trace_id"] == b["trace_id"] == c["trace_id"]
    assert a["request_id"] == b["request_id"] == c["request_id"]
    assert len({a["span_id"], b["span_id"], c["span_id"]}) == 3
    assert "user_id" not in b  # baggage is off by default: the user stays in service A
    sdk_log.wait_for(lambda x: len([y for y in sdk_log.lines() if _access(y)]) == 3)
    accesses = {x["span_id"]: x for x in sdk_log.lines() if _access(x)}
    assert accesses[b["span_id"]]["attrs"]["parent_span_id"] == a["span_id"]
    assert accesses[c["span_id"]]["attrs"]["parent_span_id"] == b["span_id"]
    for msg, fields in (("edge", a), ("middle", b), ("leaf", c)):
        line = sdk_log.wait_for(lambda x, m=msg: x["message"] == m)
        assert line["span_id"] == fields["span_id"] and line["trace_id"] == a["trace_id"]


def test_baggage_carries_user_when_enabled(sdk_log, serve_asgi) -> None:
    async def inner(request: Request) -> JSONResponse:
        return JSONResponse(obshub_sdk.current())

    inner_url = serve_asgi(CorrelationMiddleware(Starlette(routes=[Route("/", inner)]), baggage=True))

    async def outer(request: Request) -> JSONResponse:
        obshub_sdk.bind_user("dave", "sess-d")
        hooks = httpx_async_event_hooks(baggage=True)
        async with httpx.AsyncClient(event_hooks=hooks) as client:
            return JSONResponse((await client.get(inner_url)).json())

    outer_url = serve_asgi(CorrelationMiddleware(Starlette(routes=[Route("/", outer)])))
    down = httpx.get(outer_url).json()
    assert (down["user_id"], down["session_id"]) == ("dave", "sess-d")


def test_lifespan_and_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    async def main() -> None:
        await CorrelationMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]

    asyncio.run(main())
    assert seen == ["lifespan"]


def test_cancelled_request_is_logged_as_499(sdk_log) -> None:
    started = asyncio.Event()

    async def hangs(scope, receive, send) -> None:
        started.set()
        await asyncio.Event().wait()

    async def main() -> None:
        scope = {"type": "http", "method": "GET", "path": "/hang", "headers": []}
        task = asyncio.create_task(CorrelationMiddleware(hangs)(scope, None, None))  # type: ignore[arg-type]
        await started.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    access = sdk_log.wait_for(_access)
    assert access["attrs"]["status"] == 499 and access["level"] == "info"

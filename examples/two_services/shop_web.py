"""Service A of the two-service example: the shop's web front ("web-1").

A user request enters here, the user is bound after "authentication", and the payment is
delegated to service B over HTTP with the correlation headers attached. Every line goes to this
service's own JSON-lines file, which the agent on "web-1" ships.

    python shop_web.py --port 8001 --log logs/web-1/shop-web.jsonl --backend http://127.0.0.1:8002
"""

from __future__ import annotations

import argparse

import httpx
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import obshub_sdk
from obshub_sdk.asgi import CorrelationMiddleware
from obshub_sdk.propagation import httpx_async_event_hooks

log = structlog.get_logger("shop.web")


def build_app(backend: str) -> CorrelationMiddleware:
    # One client for the app's lifetime; the hook adds traceparent/X-Request-ID (and, between
    # our own two services, the user as W3C baggage) to every call.
    client = httpx.AsyncClient(base_url=backend, timeout=10, event_hooks=httpx_async_event_hooks(baggage=True))

    async def checkout(request: Request) -> JSONResponse:
        user = request.query_params.get("user", "anonymous")
        obshub_sdk.bind_user(user, session_id=request.cookies.get("sid", f"sess-{user}"))
        cart = {"items": 3, "total_cents": 4599}
        log.info("checkout started", **cart)
        obshub_sdk.track("checkout_started", **cart)
        resp = await client.post(
            "/charge", json={"amount_cents": cart["total_cents"], "fail": request.query_params.get("fail") == "1"}
        )
        if resp.status_code != 200:
            log.warning("payment failed", status=resp.status_code)
            body = {"ok": False}
        else:
            log.info("order confirmed", payment_id=resp.json()["payment_id"])
            obshub_sdk.track("order_completed", total_cents=cart["total_cents"])
            body = {"ok": True, "payment_id": resp.json()["payment_id"]}
        return JSONResponse({**body, **obshub_sdk.current()}, status_code=200 if body["ok"] else 402)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/checkout", checkout), Route("/healthz", healthz)])
    return CorrelationMiddleware(app)


def main() -> None:
    parser = argparse.ArgumentParser(description="shop web front (service A)")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log", default="logs/web-1/shop-web.jsonl", help="JSON-lines file")
    parser.add_argument("--host-name", default="web-1", help="host name written on every line")
    parser.add_argument("--backend", default="http://127.0.0.1:8002", help="payments API URL")
    args = parser.parse_args()
    obshub_sdk.configure(service="shop-web", path=args.log, host=args.host_name, baggage=True)
    # log_config=None: uvicorn's own records go through the root logger, i.e. the same JSON file;
    # access_log=False: the middleware writes the (correlated) access line instead.
    uvicorn.run(build_app(args.backend), host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()

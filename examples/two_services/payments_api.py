"""Service B of the two-service example: the payments API ("api-1").

Called by service A with ``traceparent``/``X-Request-ID``/``baggage``; its lines carry the same
``trace_id`` and ``request_id`` as A's, and the user from A's baggage, but its own ``span_id``,
``service`` and ``host``.

    python payments_api.py --port 8002 --log logs/api-1/payments.jsonl
"""

from __future__ import annotations

import argparse
import os

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import obshub_sdk
from obshub_sdk.asgi import CorrelationMiddleware

log = structlog.get_logger("payments.api")


class GatewayError(Exception):
    pass


class CardDeclined(Exception):
    pass


def _call_gateway(amount_cents: int, fail: bool) -> str:
    if fail:
        raise GatewayError("acquirer answered 05 (do not honour)")
    return "pay_" + os.urandom(6).hex()


def _charge(amount_cents: int, fail: bool) -> str:
    try:
        return _call_gateway(amount_cents, fail)
    except GatewayError as exc:  # logged as one error with its cause in error.chain
        raise CardDeclined(f"card declined for {amount_cents} cents") from exc


async def charge(request: Request) -> JSONResponse:
    body = await request.json()
    amount = int(body.get("amount_cents", 0))
    log.info("charging card", amount_cents=amount)
    try:
        payment_id = _charge(amount, bool(body.get("fail")))
    except CardDeclined:
        log.exception("charge failed", amount_cents=amount)
        return JSONResponse({"error": "declined"}, status_code=402)
    obshub_sdk.track("payment_captured", amount_cents=amount)
    log.info("card charged", payment_id=payment_id)
    return JSONResponse({"payment_id": payment_id, **obshub_sdk.current()})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def build_app() -> CorrelationMiddleware:
    app = Starlette(routes=[Route("/charge", charge, methods=["POST"]), Route("/healthz", healthz)])
    # baggage=True: accept the user from service A. Only for callers you run yourself.
    return CorrelationMiddleware(app, baggage=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="payments API (service B)")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--log", default="logs/api-1/payments.jsonl", help="JSON-lines file")
    parser.add_argument("--host-name", default="api-1", help="host name written on every line")
    args = parser.parse_args()
    obshub_sdk.configure(service="payments", path=args.log, host=args.host_name, baggage=True)
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()

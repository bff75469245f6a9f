"""Probing a target once: an HTTP(S) GET or a TCP connect, timed, never raising."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx

from obshub.uptime.model import Check, ProbeResult, public_target

__all__ = ["MAX_BODY_BYTES", "USER_AGENT", "probe"]

MAX_BODY_BYTES = 1024 * 1024  # read at most this much when looking for `expect_body`
USER_AGENT = "obshub-uptime/1"


def probe(check: Check) -> ProbeResult:
    """Probe once, now. Never raises: every failure is a down result with its reason."""
    try:
        return _probe_tcp(check) if check.is_tcp else _probe_http(check)
    except Exception as e:  # a probe bug must be a down result, not a dead job
        return ProbeResult(False, f"probe failed: {type(e).__name__}: {e}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _probe_tcp(check: Check) -> ProbeResult:
    parts = urlsplit(check.target)
    host, port = parts.hostname or "", parts.port or 0
    what = f"connect {host}:{port}"
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=check.timeout_s):
            ms = _ms(started)
    except TimeoutError:
        return ProbeResult(False, f"{what}: timed out after {check.timeout_s:g} s")
    except OSError as e:
        return ProbeResult(False, f"{what}: {e.strerror or e}")
    return ProbeResult(True, f"{what} in {ms:.0f} ms", ms)


def _probe_http(check: Check) -> ProbeResult:
    what = f"GET {public_target(check.target)}"
    started = time.perf_counter()
    # No redirects (a 3xx is < 400: up), no proxies from the environment: the hub's own view.
    try:
        with (
            httpx.Client(
                timeout=check.timeout_s, follow_redirects=False, trust_env=False, headers={"User-Agent": USER_AGENT}
            ) as client,
            client.stream("GET", check.target) as resp,
        ):
            ms = _ms(started)
            body = b""
            if check.expect_body is not None:
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) >= MAX_BODY_BYTES or check.expect_body.encode() in body:
                        break
                    if time.perf_counter() - started > check.timeout_s:
                        return ProbeResult(
                            False,
                            f"{what}: timed out reading the body after {check.timeout_s:g} s",
                            ms,
                            resp.status_code,
                        )
    except httpx.TimeoutException:
        return ProbeResult(False, f"{what}: timed out after {check.timeout_s:g} s")
    except httpx.HTTPError as e:
        return ProbeResult(False, f"{what}: {type(e).__name__}: {e}")
    status = resp.status_code
    head = f"{what} {status} in {ms:.0f} ms"
    if check.expect_status and status not in check.expect_status:
        return ProbeResult(False, f"{head}: expected status {', '.join(map(str, check.expect_status))}", ms, status)
    if not check.expect_status and status >= 400:
        return ProbeResult(False, head, ms, status)
    if check.expect_body is not None and check.expect_body.encode() not in body:
        return ProbeResult(False, f"{head}: body does not contain {check.expect_body!r}", ms, status)
    return ProbeResult(True, head, ms, status)

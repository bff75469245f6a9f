"""Probing a target once: an HTTP(S) GET or a TCP connect, timed, never raising, to an address
the hub's network policy allows (network.py), and saying what happened without quoting what the
target sent."""

from __future__ import annotations

import socket
import ssl
import time
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import certifi
import httpx

from obshub.uptime.model import Check, ProbeResult, public_target
from obshub.uptime.network import NetworkPolicy, Refused, literal_address, resolve

__all__ = ["MAX_BODY_BYTES", "USER_AGENT", "probe", "tls_context"]

MAX_BODY_BYTES = 1024 * 1024  # read at most this much when looking for `expect_body`
USER_AGENT = "obshub-uptime/1"


@cache
def tls_context(ca: str | None = None) -> ssl.SSLContext:
    """The verifying TLS context of every probe to CAs `ca` (a check's PEM file; None: the public
    roots httpx uses, certifi's), made once and shared (an SSLContext is safe across threads).
    httpx builds one per client otherwise: loading certifi's ~150 roots cost 18 ms of CPU per
    probe, 3 cores at 10,000 checks a minute (bench/checks.py). A changed `ca` file is read
    again at the hub's next start."""
    return ssl.create_default_context(cafile=ca or certifi.where())


def probe(check: Check, policy: NetworkPolicy | None) -> ProbeResult:
    """Probe once, now. Never raises: every failure is a down result with its reason. `policy`:
    where the check may connect (an API check's, network.py); None for the operator's own
    `[[checks]]`. Either way the target is resolved once and the probe connects to an address
    of that answer, never to the name again."""
    try:
        return _probe_tcp(check, policy) if check.is_tcp else _probe_http(check, policy)
    except Exception as e:  # a probe bug must be a down result, not a dead job
        return ProbeResult(False, f"probe failed: {type(e).__name__}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _probe_tcp(check: Check, policy: NetworkPolicy | None) -> ProbeResult:
    parts = urlsplit(check.target)
    host, port = parts.hostname or "", parts.port or 0
    what = f"connect {host}:{port}"
    started = time.perf_counter()
    try:
        addrs = resolve(host, port, policy, check.timeout_s)
    except Refused as e:
        return ProbeResult(False, f"{what}: {e}")
    except OSError as e:  # TimeoutError included: a lookup past the probe's timeout
        return ProbeResult(False, f"{what}: {e.strerror or e}")
    failed = ""
    for addr in addrs:
        try:
            with socket.create_connection((addr, port), timeout=check.timeout_s):
                ms = _ms(started)
        except TimeoutError:
            return ProbeResult(False, f"{what}: timed out after {check.timeout_s:g} s")
        except OSError as e:
            failed = f"{what}: {e.strerror or e}"
            if time.perf_counter() - started < check.timeout_s:
                continue  # the next address of the answer, as create_connection would
            break
        return ProbeResult(True, f"{what} in {ms:.0f} ms", ms)
    return ProbeResult(False, failed)


def _failure(e: httpx.HTTPError) -> str:
    """What a result says of a failed request. Only the type for anything but a failed
    connection: h11 quotes the bytes it could not parse ("illegal status line: b'…'"), and a
    result must never carry what a target answered (a check on a Redis or SSH port would put
    its banner, or more, into an event every reader of the project sees)."""
    if isinstance(e, httpx.ConnectError):
        return f"ConnectError: {e}"
    if isinstance(e, httpx.RemoteProtocolError):
        return "RemoteProtocolError: the answer is not HTTP"
    return type(e).__name__


def _probe_http(check: Check, policy: NetworkPolicy | None) -> ProbeResult:
    what = f"GET {public_target(check.target)}"
    parts = urlsplit(check.target)
    host = parts.hostname or ""
    started = time.perf_counter()
    try:
        addrs = resolve(host, parts.port or (443 if parts.scheme == "https" else 80), policy, check.timeout_s)
    except Refused as e:
        return ProbeResult(False, f"{what}: {e}")
    except TimeoutError as e:
        return ProbeResult(False, f"{what}: {e}")
    except OSError as e:
        return ProbeResult(False, f"{what}: ConnectError: {e}")
    failed = ""
    for addr in addrs:
        try:
            return _get(check, what, addr, started)
        except httpx.ConnectError as e:
            failed = f"{what}: {_failure(e)}"
            if time.perf_counter() - started >= check.timeout_s:
                break  # else the next address of the answer, as a client would
        except httpx.TimeoutException:
            return ProbeResult(False, f"{what}: timed out after {check.timeout_s:g} s")
        except httpx.HTTPError as e:
            return ProbeResult(False, f"{what}: {_failure(e)}")
    return ProbeResult(False, failed)


def _get(check: Check, what: str, addr: str, started: float) -> ProbeResult:
    """One GET of the target at `addr`: the URL names the address, `Host` and the TLS server
    name (SNI, certificate check) the target's host, as a GET of the name would."""
    parts = urlsplit(check.target)
    host = parts.hostname or ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    ip = f"[{addr.replace('%', '%25')}]" if ":" in addr else addr
    netloc = (f"{userinfo}@" if "@" in parts.netloc else "") + ip
    if parts.port is not None:
        netloc += f":{parts.port}"
    url = urlunsplit(parts._replace(netloc=netloc))
    tls = {"sni_hostname": host} if parts.scheme == "https" and literal_address(host) is None else {}
    # No redirects (a 3xx is < 400: up), no proxies from the environment: the hub's own view.
    with (
        httpx.Client(
            timeout=check.timeout_s,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
            verify=tls_context(check.ca),
        ) as client,
        client.stream("GET", url, headers={"Host": hostport}, extensions=tls) as resp,
    ):
        ms = _ms(started)
        expires = _tls_expires_at(resp) if parts.scheme == "https" else None
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
                        expires,
                    )
    status = resp.status_code
    head = f"{what} {status} in {ms:.0f} ms"
    if check.expect_status and status not in check.expect_status:
        why = f"{head}: expected status {', '.join(map(str, check.expect_status))}"
        return ProbeResult(False, why, ms, status, expires)
    if not check.expect_status and status >= 400:
        return ProbeResult(False, head, ms, status, expires)
    if check.expect_body is not None and check.expect_body.encode() not in body:
        return ProbeResult(False, f"{head}: body does not contain {check.expect_body!r}", ms, status, expires)
    return ProbeResult(True, head, ms, status, expires)


def _tls_expires_at(resp: httpx.Response) -> int | None:
    """The verified peer certificate's notAfter in µs since the epoch (what `tls_expiry` alerts
    compare with now), read from the connection the response came on. None if the transport
    does not say (httpx's own does)."""
    stream = resp.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    # httpcore's sync stream gives the socket's internal `_ssl._SSLSocket`: same getpeercert().
    getpeercert = getattr(ssl_object, "getpeercert", None)
    cert = getpeercert() if callable(getpeercert) else None
    not_after = cert.get("notAfter") if isinstance(cert, dict) else None
    if not isinstance(not_after, str):
        return None
    return int(ssl.cert_time_to_seconds(not_after)) * 1_000_000

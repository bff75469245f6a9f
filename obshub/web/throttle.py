"""Login throttling: a per-client limit on failed logins, with a doubling backoff.

Read tokens are 192-bit random strings, so guessing one is hopeless; the limit is there so a
script hammering /login costs the hub (one token lookup each) and the log nothing worth noting,
and so that a person pasting the wrong token learns it after a few tries. The rules
(docs/security.md, "Login throttling"):

- a client may fail `login_max_failures` (5) times in a row; a success forgets its failures,
  and so does a quiet `WINDOW_S` (15 min) after its last failure;
- the failure that reaches the limit blocks the client for `login_backoff_s` (30 s), each
  further failure doubles the block, up to `MAX_BACKOFF_S` (15 min);
- while blocked, a login is answered 429 with `Retry-After` and not checked at all, not even a
  right token (else the block would not slow guessing);
- an attempt counts as a failure from the moment it starts until it succeeds, so a burst of
  concurrent guesses cannot slip past the limit while their lookups are in flight.

A client is its address as uvicorn reports it (the proxy's own address behind a reverse proxy,
unless uvicorn trusts it: `FORWARDED_ALLOW_IPS`, docs/security.md); an IPv6 client is its /64,
the block a single host is usually given. At most `MAX_CLIENTS` (10,000) clients are remembered
(least recently failing forgotten first: ~2 MB), so a flood from many addresses cannot grow the
hub. The state is per hub process: behind a load balancer with N replicas a client gets up to N
times the failures, which still keeps guessing hopeless.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["MAX_BACKOFF_S", "MAX_CLIENTS", "WINDOW_S", "LoginThrottle", "Verdict", "client_key"]

WINDOW_S = 15 * 60.0
MAX_BACKOFF_S = 15 * 60.0
MAX_CLIENTS = 10_000


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0  # when the last attempt started
    until: float = 0.0  # blocked until then
    told: float = 0.0  # the block a refusal was logged for (one log line per block)


@dataclass(frozen=True)
class Verdict:
    wait_s: float  # > 0: refused, try again after this long
    first_refusal: bool  # the first refusal of this block (worth one log line)
    failures: int


class LoginThrottle:
    def __init__(
        self,
        max_failures: int,
        backoff_s: float,
        window_s: float = WINDOW_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.max_failures = max_failures  # 0: no throttling
        self.backoff_s = backoff_s
        self.window_s = window_s
        self.max_backoff_s = max_backoff_s
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def attempt(self, client: str, now: float) -> Verdict:
        """Refuse (wait_s > 0, nothing counted) while `client` is blocked; else count this
        attempt as a failure, to be cleared by `succeeded`. Called on the event loop only."""
        if not self.max_failures:
            return Verdict(0.0, False, 0)
        f = self._clients.get(client)
        if f is not None and now < f.until:
            first = f.told != f.until
            f.told = f.until
            return Verdict(f.until - now, first, f.count)
        if f is None or now - f.last > self.window_s:
            f = _Failures()
        f.count += 1
        f.last = now
        if f.count >= self.max_failures:
            doublings = min(f.count - self.max_failures, 30)  # 2**30 * 30 s is far past the cap
            f.until = now + min(self.backoff_s * 2**doublings, self.max_backoff_s)
        self._clients[client] = f
        self._clients.move_to_end(client)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return Verdict(0.0, False, f.count)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def forgive(self, client: str) -> None:
        """Uncount an attempt that could not be judged (the store did not answer): an outage
        must not block the people trying to log in during it."""
        f = self._clients.get(client)
        if f is None:
            return
        f.count -= 1
        if f.count <= 0:
            del self._clients[client]
        elif f.count < self.max_failures:
            f.until = 0.0


def client_key(host: str | None) -> str:
    """The throttled unit for a client address: itself, or its /64 for IPv6."""
    if not host:
        return ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is 192.0.2.1 on a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)

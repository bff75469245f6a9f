"""Where a check defined over the API may connect: the hub's network policy for checks.

A check makes the hub send a request from inside its network and report what came back (up or
down, the status, whether the body held `expect_body`). Whoever may define one could otherwise
read the hub's side of the network one guess at a time: `http://127.0.0.1:9200/_cat/indices`
with `expect_body`, the cloud metadata service at 169.254.169.254, an admin page on 10.x. So an
API check reaches public addresses only, unless the operator lists networks in
`checks_allow_networks` (monitoring internal services is a real use; it also lets every admin
token of every project probe those networks), and never what `checks_deny_networks` lists.

The rule, for each address a target resolves to, first match wins:

    1. in checks_deny_networks                  refused
    2. unspecified (0.0.0.0, ::) or multicast   refused (0.0.0.0 reaches the hub's own host)
    3. one of the hub's own addresses (but      refused, unless that very address is listed
       loopback), public or private             (a /32 or /128) in checks_allow_networks:
                                                allowing 10.0.0.0/8 opens the internal network,
                                                not the hub's host and what listens on it
    4. in checks_allow_networks                 allowed (loopback and private too, if listed)
    5. not a public unicast address             refused: loopback, link-local, private
       (ipaddress' `is_global`)                 (RFC 1918, ULA fc00::/7, site-local fec0::/10),
                                                shared 100.64/10, documentation, reserved
    6. otherwise                                allowed

An IPv4-mapped (`::ffff:127.0.0.1`) or 6to4 (`2002:7f00:1::`) IPv6 address is judged as the IPv4
address it carries.

Checked at probe time on the resolved address, and the probe connects to that very address
(`resolve`): a name that resolves to a public address when defined and to 127.0.0.1 when probed
(DNS rebinding) is refused, since nothing resolves it a second time. A literal address in a
target is also refused when the check is defined (a 400 naming `target`). Checks of the hub
config file (`[[checks]]`) are the operator's own and not restricted (`probe` gets no policy).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from functools import cache
from ipaddress import IPv4Address, IPv6Address, ip_address

from obshub.settings import IPNetwork, Settings

__all__ = ["MAX_LOOKUPS", "IPAddress", "NetworkPolicy", "Refused", "literal_address", "resolve"]

IPAddress = IPv4Address | IPv6Address
_DENIED = "an address in the hub's checks_deny_networks setting"
_OWN = "one of the hub's own addresses"


class Refused(Exception):
    """The target's address is not one an API check may reach; the text says why, naming the
    setting, and never the address a name resolved to (that would map the hub's internal DNS)."""


@dataclass(frozen=True)
class NetworkPolicy:
    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> NetworkPolicy:
        return cls(settings.checks_allow, settings.checks_deny)

    def refusal(self, addr: IPAddress) -> str | None:
        """What `addr` is when it may not be reached ("a loopback address"; the module
        docstring's rule), None when it may."""
        if isinstance(addr, IPv6Address):  # an IPv4 address carried in IPv6 is judged as itself
            addr = addr.ipv4_mapped or addr.sixtofour or addr
        if any(addr in n for n in self.deny):
            return _DENIED
        if addr.is_unspecified or addr.is_multicast:
            return "an unspecified or multicast address"
        if not addr.is_loopback and _is_own(addr):
            if any(n.num_addresses == 1 and addr in n for n in self.allow):
                return None
            return _OWN
        if any(addr in n for n in self.allow):
            return None
        if addr.is_loopback:
            return "a loopback address"
        if addr.is_link_local:
            return "a link-local address"
        site_local = isinstance(addr, IPv6Address) and addr.is_site_local  # fec0::/10, deprecated
        if addr.is_private or addr.is_reserved or site_local or not addr.is_global:
            return "a private or reserved address"
        return None


def _binds(addr: str, family: socket.AddressFamily) -> bool:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((addr, 0))
        except OSError:
            return False
    return True


@cache
def _bind_means_local() -> bool:
    """Whether the kernel refuses to bind a foreign address (false with Linux's
    ip_nonlocal_bind=1): 192.0.2.1 (TEST-NET-1) is nobody's."""
    return not _binds("192.0.2.1", socket.AF_INET)


def _is_own(addr: IPAddress) -> bool:
    """Whether `addr` is an address of this host: the kernel lets a socket bind only to those,
    which covers every interface without listing them (one syscall). Where binding proves
    nothing, the addresses the host name resolves to."""
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    if _bind_means_local():
        return _binds(str(addr), family)
    try:
        found = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return False
    return any(ip_address(str(info[4][0]).split("%", 1)[0]) == addr for info in found)


def literal_address(host: str) -> IPAddress | None:
    """The address a target's host is, when it is one (`10.0.0.1`, `[::1]` without brackets)."""
    try:
        return ip_address(host)
    except ValueError:
        return None


# Name lookups in flight at once. getaddrinfo cannot be cancelled: a lookup past its probe's
# timeout is left to finish on its own (daemon) thread, and a resolver that hangs for good
# leaks at most this many threads; beyond it probes fail at once instead of piling up.
MAX_LOOKUPS = 32
_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)


def _lookup(host: str, port: int) -> list[str]:
    return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def _addresses(host: str, port: int, timeout_s: float | None) -> list[str]:
    """The addresses socket.getaddrinfo gives, bounded by `timeout_s` (a probe's timeout covers its name lookup too:
    the resolver's own timeouts are 5 s x attempts x nameservers). TimeoutError past it."""
    if timeout_s is None or literal_address(host) is not None:
        return _lookup(host, port)
    if not _lookups.acquire(blocking=False):
        raise TimeoutError(f"name lookup of {host}: {MAX_LOOKUPS} lookups already pending (resolver hung?)")
    done = threading.Event()
    out: list[list[str] | BaseException] = []

    def lookup() -> None:
        try:
            out.append(_lookup(host, port))
        except BaseException as e:  # handed to the waiting probe
            out.append(e)
        finally:
            _lookups.release()
            done.set()

    threading.Thread(target=lookup, name="obshub-resolve", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError(f"name lookup of {host} timed out after {timeout_s:g} s")
    found = out[0]
    if isinstance(found, BaseException):
        raise found
    return found


def resolve(host: str, port: int, policy: NetworkPolicy | None, timeout_s: float | None = None) -> list[str]:
    """The addresses to connect to for `host` (once: the probe connects to these, never to the
    name), those `policy` allows, in the resolver's order. Refused when there is none; OSError
    (socket.gaierror) when the name does not resolve, TimeoutError when it takes over
    `timeout_s`. `policy` None: every address (the operator's own checks)."""
    addrs = _addresses(host, port, timeout_s)
    if policy is None:
        return addrs
    allowed: list[str] = []
    why = ""
    for a in addrs:
        refusal = policy.refusal(ip_address(a.split("%", 1)[0]))
        if refusal is None:
            allowed.append(a)
        elif not why:
            why = refusal
    if not allowed:
        verb = "is" if literal_address(host) is not None else "resolves to"
        hint = {
            _DENIED: "",
            _OWN: " (allowed only when listed alone, as a /32 or /128, in the hub's checks_allow_networks setting)",
        }.get(why, " (allowed only in a network listed in the hub's checks_allow_networks setting)")
        raise Refused(f"refused by the hub's network policy for checks: {host} {verb} {why}{hint}")
    return allowed

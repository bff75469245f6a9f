"""`opensearch://` store URLs (docs/opensearch.md) -> a frozen `OpenSearchConfig`.

    opensearch://[user:pass@]host:port[,host2:port...][?prefix=obshub&tls=1&verify=0&ca=/path
                                                       &cert=/client.pem&key=/client.key]

`opensearchs://` is the same with `tls=1`. Secrets may also come from the environment so they
stay out of process listings: OBSHUB_OPENSEARCH_USER, OBSHUB_OPENSEARCH_PASSWORD,
OBSHUB_OPENSEARCH_CA_CERTS, OBSHUB_OPENSEARCH_CLIENT_CERT, OBSHUB_OPENSEARCH_CLIENT_KEY
(docs/opensearch.md). Every problem raises ConfigError naming
OBSHUB_STORE, so the hub fails at start with a message the operator can act on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from obshub.errors import ConfigError

__all__ = ["OpenSearchConfig", "parse_url"]

_PREFIX_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # index names: lowercase, no leading _/-
_REFRESH = ("read", "wait_for", "false")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class OpenSearchConfig:
    hosts: tuple[tuple[str, int], ...]
    prefix: str = "obshub"
    user: str | None = None
    password: str | None = None
    tls: bool = False
    verify: bool = True  # verify the server certificate (only meaningful with tls)
    ca_certs: str | None = None  # PEM bundle of the cluster's CA
    client_cert: str | None = None  # PEM client certificate, for clusters that require mutual TLS
    client_key: str | None = None  # its private key, when not in the same file
    timeout_s: float = 30.0  # per request; a bulk of 5 MiB takes ~0.3 s on a healthy node
    # "read": writes don't wait for a refresh; the next read from this process refreshes first
    # (read-your-writes at ~1 ms per read instead of up to 1 s per bulk). "wait_for": every
    # bulk waits for the next refresh (visible to all hub replicas on return). "false": neither.
    refresh: str = "read"
    shards: int = 1  # primaries per backing index of the events stream
    replicas: int | None = None  # None: the cluster default (1); 0 for a single-node cluster
    compress: bool = False  # gzip request bodies: worth it over a WAN, costs CPU on loopback

    def redacted(self) -> str:
        auth = f"{self.user}:***@" if self.user else ""
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"opensearch://{auth}{hosts}?prefix={self.prefix}&tls={int(self.tls)}"


def _bad(url: str, why: str) -> ConfigError:
    safe = re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
    return ConfigError(
        f"OBSHUB_STORE: invalid OpenSearch URL {safe!r}: {why}. Expected "
        "opensearch://[user:pass@]host:port[,host2:port...][?prefix=obshub&tls=1]"
    )


def _flag(url: str, key: str, value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _bad(url, f"{key}={value!r} is not a boolean (use 1 or 0)")


def _int(url: str, key: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise _bad(url, f"{key}={value!r} is not an integer") from None
    if not lo <= n <= hi:
        raise _bad(url, f"{key}={n} is outside {lo}..{hi}")
    return n


def _host(url: str, part: str) -> tuple[str, int]:
    if part.startswith("["):  # [::1]:9200
        end = part.find("]")
        if end < 0:
            raise _bad(url, f"unclosed '[' in host {part!r}")
        host, rest = part[1:end], part[end + 1 :]
        if not rest.startswith(":"):
            raise _bad(url, f"host {part!r} needs a port")
        port_s = rest[1:]
    else:
        host, sep, port_s = part.rpartition(":")
        if not sep:
            raise _bad(url, f"host {part!r} needs a port (OpenSearch listens on 9200 by default)")
    if not host:
        raise _bad(url, f"empty host name in {part!r}")
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise _bad(url, f"port {port_s!r} of {host!r} is not a number in 1..65535")
    return host, int(port_s)


def parse_url(url: str, env: dict[str, str] | None = None) -> OpenSearchConfig:
    env = dict(os.environ) if env is None else env
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("opensearch", "opensearchs"):
        raise _bad(url, "scheme must be opensearch:// or opensearchs://")
    netloc, _, query = rest.partition("?")
    netloc = netloc.rstrip("/")
    if "/" in netloc:
        raise _bad(url, "no path is allowed after host:port (use ?prefix= to name the indices)")
    user = password = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        user, colon, pw = auth.partition(":")
        user = unquote(user)
        password = unquote(pw) if colon else None
        if not user:
            raise _bad(url, "empty user name before '@'")
    if not netloc:
        raise _bad(url, "no host:port")
    hosts = tuple(_host(url, p.strip()) for p in netloc.split(",") if p.strip())
    if not hosts:
        raise _bad(url, "no host:port")

    opts: dict[str, object] = {"tls": scheme == "opensearchs"}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "prefix":
            if not _PREFIX_RE.fullmatch(value):
                raise _bad(url, f"prefix={value!r} must be 1-40 of [a-z0-9_-], starting with a letter or digit")
            opts["prefix"] = value
        elif key in ("tls", "ssl"):
            opts["tls"] = _flag(url, key, value)
        elif key == "verify":
            opts["verify"] = _flag(url, key, value)
        elif key in ("ca", "ca_certs"):
            opts["ca_certs"] = value
        elif key in ("cert", "client_cert"):
            opts["client_cert"] = value
        elif key in ("key", "client_key"):
            opts["client_key"] = value
        elif key == "timeout":
            opts["timeout_s"] = float(_int(url, key, value, 1, 600))
        elif key == "refresh":
            if value not in _REFRESH:
                raise _bad(url, f"refresh={value!r} must be one of {', '.join(_REFRESH)}")
            opts["refresh"] = value
        elif key == "shards":
            opts["shards"] = _int(url, key, value, 1, 64)
        elif key == "replicas":
            opts["replicas"] = _int(url, key, value, 0, 8)
        elif key == "compress":
            opts["compress"] = _flag(url, key, value)
        else:
            raise _bad(url, f"unknown option {key!r}")

    user = user or env.get("OBSHUB_OPENSEARCH_USER") or None
    if password is None:
        password = env.get("OBSHUB_OPENSEARCH_PASSWORD") or None
    if password is not None and user is None:
        raise _bad(url, "a password needs a user name")
    ca = opts.get("ca_certs") or env.get("OBSHUB_OPENSEARCH_CA_CERTS") or None
    if ca is not None:
        if not os.path.isfile(str(ca)):
            raise _bad(url, f"CA bundle {ca!r} does not exist (ca= or OBSHUB_OPENSEARCH_CA_CERTS)")
        opts["ca_certs"] = ca
        opts["tls"] = True  # a CA only makes sense with TLS
    for opt, env_key, what in (
        ("client_cert", "OBSHUB_OPENSEARCH_CLIENT_CERT", "client certificate"),
        ("client_key", "OBSHUB_OPENSEARCH_CLIENT_KEY", "client key"),
    ):
        path = opts.get(opt) or env.get(env_key) or None
        if path is not None:
            if not os.path.isfile(str(path)):
                raise _bad(url, f"{what} {path!r} does not exist ({opt.split('_')[1]}= or {env_key})")
            opts[opt] = path
            opts["tls"] = True  # a client certificate only makes sense with TLS
    if opts.get("client_key") and not opts.get("client_cert"):
        raise _bad(url, "a client key needs its certificate (cert= or OBSHUB_OPENSEARCH_CLIENT_CERT)")
    return OpenSearchConfig(hosts=hosts, user=user, password=password, **opts)  # type: ignore[arg-type]

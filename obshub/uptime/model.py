"""The uptime model: what a check is (`Check`), what one probe found (`ProbeResult`), and the
limits a definition must keep (a definition that breaks one is an `obshub.errors.FieldError`)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_TIMEOUT_S",
    "MAX_INTERVAL_S",
    "MAX_TIMEOUT_S",
    "MIN_INTERVAL_S",
    "SERVICE",
    "Check",
    "ProbeResult",
    "public_target",
]

MIN_INTERVAL_S = 5  # below this a check is a load test of its target, not a health probe
MAX_INTERVAL_S = 86_400
DEFAULT_INTERVAL_S = 60
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
SERVICE = "obshub-uptime"  # `service` of every check event the hub writes


@dataclass(frozen=True)
class Check:
    name: str
    target: str  # http(s)://… (GET) or tcp://host:port (connect)
    interval_s: int = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    expect_status: tuple[int, ...] = ()  # empty: any status < 400 is up
    expect_body: str | None = None  # substring the body must contain
    project: str = "default"  # project name (config-file checks); API checks: the token's
    source: str = "config"  # config | api
    defined_at: int = 0  # µs of the definition event (api checks), for the retention refresh
    public: bool = False  # shown on the project's public status page (docs/uptime.md), if it has one
    ca: str | None = None  # PEM file of CAs an https target's certificate must chain to (config only)

    @property
    def is_tcp(self) -> bool:
        return self.target.startswith("tcp://")

    @property
    def offset_s(self) -> int:
        """Fixed per-check phase inside the interval (same on every replica, so slots agree),
        so a hundred 60 s checks do not all fire at :00."""
        return zlib.crc32(f"{self.project}/{self.name}".encode()) % self.interval_s

    def slot(self, t: float) -> int:
        """The interval number `t` (epoch seconds) falls in: one stored result per slot."""
        return int((t - self.offset_s) // self.interval_s)

    def slot_start(self, slot: int) -> float:
        return slot * self.interval_s + self.offset_s

    def definition(self) -> dict[str, Any]:
        """The fields a user wrote (what POST takes and what a definition event stores)."""
        out: dict[str, Any] = {
            "name": self.name,
            "target": self.target,
            "interval_s": self.interval_s,
            "timeout_s": self.timeout_s,
        }
        if self.expect_status:
            out["expect_status"] = list(self.expect_status)
        if self.expect_body is not None:
            out["expect_body"] = self.expect_body
        if self.public:
            out["public"] = True
        return out


@dataclass(frozen=True)
class ProbeResult:
    up: bool
    message: str  # "GET https://x 200 in 35 ms" or why it failed
    latency_ms: float | None = None  # to the response headers / the TCP connect; None: never got there
    status: int | None = None  # HTTP status, when a response came
    tls_expires_at: int | None = None  # https: the peer certificate's notAfter, µs since the epoch


def public_target(target: str) -> str:
    """The target with any password masked: it goes into messages, attrs and API answers."""
    parts = urlsplit(target)
    if parts.password is None:
        return target
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))

"""Hub settings: one frozen dataclass, read from OBSHUB_* environment variables and, optionally,
a TOML file named by OBSHUB_CONFIG (environment wins over the file, CLI flags win over both).

Read once at start; a bad value stops the hub with a message naming the key, never later at
request time.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from obshub.errors import ConfigError, FieldError
from obshub.events import Limits

__all__ = ["ES_INDEX_FIELDS", "TABLES", "IPNetwork", "Settings", "load_settings", "parse_networks", "parse_tables"]

MiB = 1024 * 1024
IPNetwork = IPv4Network | IPv6Network
# What an Elasticsearch index name may fill (`es_index_field`); "" fills none.
ES_INDEX_FIELDS = ("service", "env", "host", "logger", "release", "")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"  # loopback by default: exposing the hub is a deliberate choice
    port: int = 8480
    store: str = "sqlite:///./obshub-data/obshub.db"
    # `serve` retries opening an unreachable store for this long before giving up: a hub started
    # with its cluster (boot, compose, a rolling restart) finds OpenSearch ~20-60 s from ready.
    store_wait_s: float = 60.0
    # The URL clients use to reach this hub: in the DSNs `project create` and the first start
    # print, and the base for links the hub will send (notifications). Default: http://host:port.
    public_url: str = ""
    # Ingest bounds. Decoded size is what protects memory: a 10 MiB gzip bomb can inflate 1000x.
    max_body_bytes: int = 10 * MiB  # decoded request body (413 above)
    max_wire_bytes: int = 10 * MiB  # compressed request body as sent
    max_lines: int = 50_000  # lines per request; agents send ~1-5k
    # Concurrent ingest requests that may hold real memory (body > 64 KiB as sent, or chunked);
    # small ones get 8x as many slots of their own (obshub/ingest/admission.py). 2 cores: 4x.
    max_inflight: int = 8
    # A request finding no free slot waits this long for one before 429, so a burst from a
    # fleet of SDKs queues for a moment instead of being dropped (a Sentry SDK drops on 429).
    # It waits before reading its body: a queued request holds only its connection.
    admission_wait_s: float = 2.0
    # A request body must arrive within body_timeout_s, plus 1 s per min_body_rate bytes
    # received (else 408, and the connection is closed): a trickle of 1 byte/s holds what it
    # was given for 10 s, not forever, while a body arriving at 1 KiB/s or faster is never cut.
    # 0: no limit.
    body_timeout_s: float = 10.0
    min_body_rate: int = 1024  # bytes/s; 0: the body gets body_timeout_s in all
    # An idle keep-alive connection is closed after this long (uvicorn's timeout_keep_alive).
    keepalive_timeout_s: int = 5
    # Per-event bounds (obshub.events.Limits); violations reject the line with the reason.
    max_attr_keys: int = 256
    max_attr_depth: int = 8
    max_value_bytes: int = 16 * 1024
    max_message_bytes: int = 256 * 1024
    retention_days: int = 30  # events older than this are deleted by the retention job
    retention_interval_s: int = 3600  # how often the retention job runs
    # The jobs' lease (obshub/jobs/lease.py): one hub of those on a store runs the scheduled jobs
    # (uptime probes, retention, alerts); if it dies another takes over within this. Renewed
    # every third of it; replicas' clocks must agree within a fifth of it.
    lease_s: float = 15.0
    token_cache_s: float = 10.0  # token -> project cache; bounds how long a revoked token works
    # (project, host) clock-skew estimates kept in memory (obshub/clock.py), <= 1.6 KiB each; the
    # host least recently heard from is forgotten first. Host names are client input: bounded.
    skew_hosts: int = 10_000
    scrub: bool = True  # mask passwords, tokens, auth/cookie headers, card numbers before storing
    scrub_keys: str = ""  # extra sensitive key patterns, comma-separated (e.g. "iban,dob")
    # Signs web session cookies. Empty: a random key made once and kept in the store, which
    # every replica on that store shares (obshub/web/session.py).
    secret_key: str = ""
    # Failed web logins per client before it must wait (0: no limit), and its first wait, which
    # doubles with each further failure up to 15 min (obshub/web/throttle.py).
    login_max_failures: int = 5
    login_backoff_s: float = 30.0
    log_level: str = "info"
    checks: tuple[Mapping[str, Any], ...] = field(default=())  # [[checks]] from the config file
    # Alerting (obshub/alerts/, docs/alerting.md): [[alerts]] rules and [[notifiers]] (where
    # they are sent: alertmanager, webhook, slack, email) from the config file only, so
    # notifier secrets never pass through the API; rules are evaluated every alert_interval_s.
    alerts: tuple[Mapping[str, Any], ...] = field(default=())
    notifiers: tuple[Mapping[str, Any], ...] = field(default=())
    alert_interval_s: int = 30
    # Metrics defined from queries (docs/metrics.md): [[metrics]] tables (and API ones), their
    # hourly and daily values computed every rollup_interval_s by the jobs' lease holder, the last
    # rollup_recompute_hours hours again each run (late events), kept rollup_retention_days
    # (0: forever), apart from the events' own retention.
    metrics: tuple[Mapping[str, Any], ...] = field(default=())
    rollup_interval_s: int = 300
    rollup_recompute_hours: int = 6
    rollup_retention_days: int = 400
    # The Prometheus server that metrics with `datasource = "prometheus"` read (its HTTP API,
    # e.g. http://127.0.0.1:9090); "" = none. A setting, never part of a definition: an API token
    # must not make the hub fetch a URL of its choosing (SSRF, as obshub/uptime/network.py).
    prometheus_url: str = ""
    # Where checks defined over the API may connect (obshub/uptime/network.py, docs/uptime.md):
    # public addresses only, unless a network is listed here (CIDRs, comma-separated, e.g.
    # "10.0.0.0/8,fd00::/8" to monitor internal services). Deny wins over allow. [[checks]] of
    # this file are the operator's own and not restricted.
    checks_allow_networks: str = ""
    checks_deny_networks: str = ""
    # API checks per project: each one is a connection every interval_s (5 s at least), from the
    # hub holding the jobs' lease. Config-file checks do not count.
    checks_max_per_project: int = 100
    # Projects with a public status page at /status/<name> (comma-separated names; none by
    # default): no token, only the checks marked `public`, never their targets or messages.
    status_pages: str = ""
    # Elasticsearch `_bulk` (obshub/ingest/es.py): the event field the index name fills when a
    # document does not set it itself ("" keeps it only as attrs `_index`).
    es_index_field: str = "service"

    @property
    def limits(self) -> Limits:
        return Limits(
            max_attr_keys=self.max_attr_keys,
            max_attr_depth=self.max_attr_depth,
            max_value_bytes=self.max_value_bytes,
            max_message_bytes=self.max_message_bytes,
        )

    @property
    def status_page_projects(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.status_pages.split(",") if n.strip())

    @property
    def checks_allow(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.checks_allow_networks)

    @property
    def checks_deny(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.checks_deny_networks)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"


TABLES = ("checks", "alerts", "notifiers", "metrics")  # arrays of tables, from the config file only
_SIMPLE = {f.name: f for f in fields(Settings) if f.name not in TABLES}


T = TypeVar("T")


def parse_tables(
    table: str,
    raw: Sequence[Mapping[str, Any]],
    parse: Callable[[Mapping[str, Any]], T],
    identity: Callable[[T], tuple[str, ...]],
) -> list[T]:
    """The `[[table]]` arrays of the config file ([[checks]], [[alerts]], [[notifiers]]) parsed
    item by item, in file order. A bad one stops the hub at start with a ConfigError naming the
    table (`[[alerts]] #2 ('quiet')`) and the key (the FieldError `parse` raised); so does a second
    item with the same `identity` ((project, name), or (name,))."""
    out: list[T] = []
    seen: set[tuple[str, ...]] = set()
    for i, item in enumerate(raw):
        named = isinstance(item, Mapping) and isinstance(item.get("name"), str)
        where = f"[[{table}]] #{i + 1}" + (f" ({item['name']!r})" if named else "")
        try:
            if not isinstance(item, Mapping):
                raise FieldError("table", "expected a table")
            parsed = parse(item)
        except FieldError as e:
            raise ConfigError(f"OBSHUB_CONFIG: {where}: {e}") from None
        ident = identity(parsed)
        if ident in seen:
            scope = f" in project {ident[0]!r}" if len(ident) > 1 else ""
            raise ConfigError(f"OBSHUB_CONFIG: {where}: name: {ident[-1]!r} is declared twice{scope}")
        seen.add(ident)
        out.append(parsed)
    return out


def parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    """ "10.0.0.0/8, fd00::/8, 192.0.2.7" -> networks (a bare address is a /32 or /128).
    ValueError naming the bad item."""
    out: list[IPNetwork] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network: expected CIDRs like 10.0.0.0/8 or fd00::/8") from None
    return tuple(out)


def _coerce(key: str, raw: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            value = int(raw)
            if value < 0:
                raise ValueError(raw)
            return value
        if isinstance(default, float):
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise ConfigError(
            f"{key}: expected {'a non-negative ' if kind == 'int' else 'a '}{kind}, got {raw!r}"
        ) from None


def _check_public_url(url: str) -> None:
    """An http(s) URL with a host and nothing a DSN cannot carry: the DSN puts the project's
    key where a user name goes and appends /<project id> to the path."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or above 65535
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or any(c.isspace() for c in url):
        why = "is not an http:// or https:// URL"
    elif parts.username is not None:
        why = "has a user or password (a DSN puts the project's key there)"
    elif parts.query or parts.fragment or url.endswith(("?", "#")):
        why = "has a query or fragment"
    else:
        return
    raise ConfigError(f"OBSHUB_PUBLIC_URL (public_url): {url!r} {why}; expected e.g. https://obshub.example.com")


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the config file, then the environment, then explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    tables: dict[str, tuple[Mapping[str, Any], ...]] = {}
    path = env.get("OBSHUB_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"OBSHUB_CONFIG: cannot read {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"OBSHUB_CONFIG: {path} is not valid TOML: {e}") from None
        for key, raw in data.items():
            if key in TABLES:
                if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
                    raise ConfigError(f"{path}: [[{key}]] must be an array of tables")
                tables[key] = tuple(raw)
            elif key in _SIMPLE:
                values[key] = _coerce(f"{path}: {key}", raw, _SIMPLE[key].default)
            else:
                raise ConfigError(f"{path}: unknown setting {key!r}")
    for name, f in _SIMPLE.items():
        env_key = f"OBSHUB_{name.upper()}"
        if env_key in env and env[env_key] != "":
            values[name] = _coerce(env_key, env[env_key], f.default)
    for name, raw in overrides.items():
        if raw is not None:
            values[name] = _coerce(f"--{name.replace('_', '-')}", raw, _SIMPLE[name].default)
    values.update(tables)
    settings = Settings(**values)
    if not 5 <= settings.alert_interval_s <= 3600:
        raise ConfigError(f"OBSHUB_ALERT_INTERVAL_S: {settings.alert_interval_s} is not between 5 and 3600 seconds")
    if not 2 <= settings.lease_s <= 600:  # also refuses nan
        raise ConfigError(f"OBSHUB_LEASE_S: {settings.lease_s} is not between 2 and 600 seconds")
    if not 0 < settings.port < 65536:
        raise ConfigError(f"OBSHUB_PORT: {settings.port} is not a TCP port")
    if settings.max_body_bytes < 1024:
        raise ConfigError("OBSHUB_MAX_BODY_BYTES: must be at least 1024")
    if settings.body_timeout_s < 0:
        raise ConfigError("OBSHUB_BODY_TIMEOUT_S: must not be negative (0: no limit)")
    if settings.public_url:
        _check_public_url(settings.public_url)
    if not 0 <= settings.login_backoff_s <= 3600:  # also refuses nan
        raise ConfigError(f"OBSHUB_LOGIN_BACKOFF_S: {settings.login_backoff_s} is not between 0 and 3600 seconds")
    if not 10 <= settings.rollup_interval_s <= 86_400:
        raise ConfigError(f"OBSHUB_ROLLUP_INTERVAL_S: {settings.rollup_interval_s} is not between 10 and 86400 seconds")
    if settings.rollup_recompute_hours > 168:
        raise ConfigError(f"OBSHUB_ROLLUP_RECOMPUTE_HOURS: {settings.rollup_recompute_hours} is more than 168 (a week)")
    if settings.prometheus_url and (
        urlsplit(settings.prometheus_url).scheme not in ("http", "https")
        or not urlsplit(settings.prometheus_url).netloc
    ):
        raise ConfigError(
            f"OBSHUB_PROMETHEUS_URL (prometheus_url): {settings.prometheus_url!r} is not an http(s):// URL"
        )
    if settings.es_index_field not in ES_INDEX_FIELDS:
        raise ConfigError(
            f"OBSHUB_ES_INDEX_FIELD (es_index_field): {settings.es_index_field!r} is not one of "
            f"{', '.join(repr(f) for f in ES_INDEX_FIELDS)}"
        )
    for key in ("checks_allow_networks", "checks_deny_networks"):
        try:
            parse_networks(getattr(settings, key))
        except ValueError as e:
            raise ConfigError(f"OBSHUB_{key.upper()} ({key}): {e}") from None
    return settings

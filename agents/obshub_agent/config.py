"""Agent configuration: one TOML file -> frozen dataclasses, validated at start.

Every default carries its unit and the reason for it. Errors name the offending key
(``inputs[0].format: unknown format 'jsn'``) so a typo fails the start, not the first shipment.
SIGHUP re-reads the same file through `load_config`; offsets live in the state dir, not here.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["FORMATS", "AgentConfig", "ConfigError", "InputConfig", "MultilineConfig", "load_config", "parse_config"]

FORMATS = ("json", "text", "syslog", "apache_error", "log4j", "python", "regex")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class MultilineConfig:
    start: str  # regex: a line matching it begins a new event; other lines continue the current one
    max_lines: int = 500  # lines per event; a runaway stack trace is cut here, the rest starts anew
    max_bytes: int = 1 << 20  # 1 MiB per event, same reason (memory bound)
    timeout_ms: int = 1000  # a group with no continuation for this long is emitted (last event of a burst)


@dataclass(frozen=True)
class InputConfig:
    paths: tuple[str, ...]
    format: str = "text"
    service: str | None = None  # default: the file's stem ("/var/log/shop.jsonl" -> "shop")
    labels: dict[str, str] = field(default_factory=dict)  # static attrs added to every event
    regex: str | None = None  # format = "regex": named groups ts, level, message + any others
    ts_format: str | None = None  # strptime format for the `ts` group when it is not ISO-like
    multiline: MultilineConfig | Literal[False] | None = None  # python/log4j get an automatic one unless `false`
    exclude: tuple[str, ...] = ()  # globs of paths never read (e.g. "*.gz")
    start_at: str = "beginning"  # where a file never seen before is read from: beginning | end
    encoding: str = "utf-8"  # undecodable bytes are replaced, never dropped


@dataclass(frozen=True)
class AgentConfig:
    hub: str  # the first of `hub_urls` (what logs and single-hub code name)
    token: str
    host: str
    state_dir: Path
    inputs: tuple[InputConfig, ...]
    timezone: str | None = None  # zone for timestamps without one (syslog, apache); default: local
    compression: str = "zstd"  # zstd | gzip | none; zstd falls back to gzip when not installed
    batch_max_bytes: int = 1 << 20  # 1 MiB raw NDJSON per request: ~3k SDK events, far under the hub's 10 MiB
    batch_max_age_ms: int = 1000  # a line waits at most this long before it is spooled and shipped
    spool_max_bytes: int = 256 << 20  # 256 MiB on disk: hours of a busy host; full -> reading pauses
    spool_segment_bytes: int = 8 << 20  # 8 MiB segments: acked space is freed one segment at a time
    spool_fsync: bool = True  # fsync each spool record before its checkpoint moves (durability)
    read_chunk_bytes: int = 256 << 10  # 256 KiB per read(): bounds memory per file, amortizes syscalls
    max_line_bytes: int = 256 << 10  # longer lines are cut (attrs.truncated = true), bounded memory
    poll_interval_ms: int = 250  # idle files are polled this often (no inotify: works on every FS)
    discover_interval_ms: int = 1000  # globs are re-evaluated this often (new / rotated files)
    # a file deleted or renamed out of the globs is closed after this long idle at EOF
    close_removed_after_ms: int = 5000
    close_inactive_ms: int = 300_000  # any file idle this long at EOF is closed (reopened when it grows)
    request_timeout_s: float = 30.0  # per HTTP request to the hub
    backoff_initial_ms: int = 250  # first retry delay; doubles per failure, with full jitter
    backoff_max_ms: int = 30_000  # cap of the retry delay (also caps Retry-After + auth retries at 4x)
    shutdown_timeout_s: float = 5.0  # SIGTERM: time allowed to ship what is spooled before exiting
    # Prometheus text endpoint; "" (or "off" in the file) disables it; port 0 = any free port (logged)
    metrics_address: str = "127.0.0.1:9480"
    log_level: str = "info"
    # every hub URL batches are spread over (round-robin, failover); () = just `hub`
    hub_urls: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return self.hub_urls or (self.hub,)


_URL = re.compile(r"^https?://[^/]+")


def _hub_urls(d: dict[str, Any], environ: Mapping[str, str]) -> tuple[str, ...]:
    """`hub = "URL"`, or a `[hub]` table with `url = "URL"` or `urls = ["URL", ...]` (not both);
    `OBSHUB_AGENT_HUB` (comma-separated URLs) overrides the file."""
    env = environ.get("OBSHUB_AGENT_HUB")
    if env:
        urls: list[Any] = [u.strip() for u in env.split(",") if u.strip()]
        where = "OBSHUB_AGENT_HUB"
    else:
        raw = d.get("hub")
        if isinstance(raw, dict):
            unknown = set(raw) - {"url", "urls"}
            if unknown:
                raise ConfigError(f"hub: unknown key(s) {sorted(unknown)} (url or urls)")
            if "url" in raw and "urls" in raw:
                raise ConfigError("hub.url and hub.urls: set one of them (hub.urls = [...] for several hubs)")
            if "urls" in raw:
                urls = _typed(raw, "urls", list, "hub.")
                where = "hub.urls"
                if not urls:
                    raise ConfigError('hub.urls: empty (e.g. hub.urls = ["http://a:8480", "http://b:8480"])')
            else:
                urls = [_typed(raw, "url", str, "hub.", "")]
                where = "hub.url"
        else:
            urls = [_typed(d, "hub", str, "", "")]
            where = "hub"
    for i, u in enumerate(urls):
        at = f"{where}[{i}]" if where in ("hub.urls", "OBSHUB_AGENT_HUB") else where
        if not u:
            raise ConfigError(f'{at}: missing (e.g. hub = "http://127.0.0.1:8480")')
        if not isinstance(u, str) or not _URL.match(u):
            raise ConfigError(f"{at}: expected an http(s):// URL, got {u!r}")
    out = tuple(u.rstrip("/") for u in urls)
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: a URL is listed twice")
    return out


def _typed(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    if key not in d:
        return default
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if not isinstance(v, typ) or (isinstance(v, bool) and typ in (int, float)):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise ConfigError(f"{where}{key}: expected {name}, got {type(v).__name__} {v!r}")
    return v


def _regex(pattern: str, where: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: invalid regex {pattern!r}: {exc}") from None
    return pattern


def _multiline(v: Any, where: str) -> MultilineConfig | Literal[False]:
    if v is False:
        return False
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a table like {{ start = '^\\d{{4}}-' }} or false")
    unknown = set(v) - {"start", "max_lines", "max_bytes", "timeout_ms"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    start = _typed(v, "start", str, where + ".")
    if start is None:
        raise ConfigError(f"{where}.start: missing (regex matching the first line of an event)")
    m = MultilineConfig(
        start=_regex(start, where + ".start"),
        max_lines=_typed(v, "max_lines", int, where + ".", 500),
        max_bytes=_typed(v, "max_bytes", int, where + ".", 1 << 20),
        timeout_ms=_typed(v, "timeout_ms", int, where + ".", 1000),
    )
    if m.max_lines < 1 or m.timeout_ms < 0 or m.max_bytes < 1:
        raise ConfigError(f"{where}: max_lines/max_bytes must be >= 1 and timeout_ms >= 0")
    return m


_INPUT_KEYS = {
    "paths",
    "format",
    "service",
    "labels",
    "regex",
    "ts_format",
    "multiline",
    "exclude",
    "start_at",
    "encoding",
}


def _input(i: int, d: Any) -> InputConfig:
    where = f"inputs[{i}]."
    if not isinstance(d, dict):
        raise ConfigError(f"inputs[{i}]: expected a table")
    unknown = set(d) - _INPUT_KEYS
    if unknown:
        raise ConfigError(f"{where[:-1]}: unknown key(s) {sorted(unknown)}")
    paths = _typed(d, "paths", (list, str), where)
    if isinstance(paths, str):
        paths = [paths]
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise ConfigError(f"{where}paths: missing or empty (list of glob patterns)")
    fmt = _typed(d, "format", str, where, "text")
    if fmt not in FORMATS:
        raise ConfigError(f"{where}format: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    regex = _typed(d, "regex", str, where)
    if fmt == "regex":
        if not regex:
            raise ConfigError(f'{where}regex: required with format = "regex"')
        _regex(regex, where + "regex")
        if "message" not in re.compile(regex).groupindex:
            raise ConfigError(f"{where}regex: needs a named group (?P<message>...)")
    labels = _typed(d, "labels", dict, where, {})
    for k, v in labels.items():
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigError(f"{where}labels.{k}: expected a string/number/bool")
    ml: MultilineConfig | Literal[False] | None = None
    if "multiline" in d:
        ml = _multiline(d["multiline"], where + "multiline")
    start_at = _typed(d, "start_at", str, where, "beginning")
    if start_at not in ("beginning", "end"):
        raise ConfigError(f"{where}start_at: expected 'beginning' or 'end'")
    exclude = _typed(d, "exclude", list, where, [])
    return InputConfig(
        paths=tuple(os.path.expanduser(p) for p in paths),
        format=fmt,
        service=_typed(d, "service", str, where),
        labels={str(k): v for k, v in labels.items()},
        regex=regex,
        ts_format=_typed(d, "ts_format", str, where),
        multiline=ml,  # False = explicitly disabled
        exclude=tuple(exclude),
        start_at=start_at,
        encoding=_typed(d, "encoding", str, where, "utf-8"),
    )


_INT_KEYS = (
    "batch_max_bytes",
    "batch_max_age_ms",
    "spool_max_bytes",
    "spool_segment_bytes",
    "read_chunk_bytes",
    "max_line_bytes",
    "poll_interval_ms",
    "discover_interval_ms",
    "close_removed_after_ms",
    "close_inactive_ms",
    "backoff_initial_ms",
    "backoff_max_ms",
)
_FLOAT_KEYS = ("request_timeout_s", "shutdown_timeout_s")
_TOP_KEYS = {
    "hub",
    "token",
    "host",
    "state_dir",
    "inputs",
    "timezone",
    "compression",
    "spool_fsync",
    "metrics_address",
    "log_level",
    *_INT_KEYS,
    *_FLOAT_KEYS,
}


def parse_config(d: dict[str, Any], *, env: dict[str, str] | None = None) -> AgentConfig:
    """Validate a decoded TOML document. `OBSHUB_AGENT_TOKEN` / `OBSHUB_AGENT_HUB` override the file."""
    environ: Mapping[str, str] = os.environ if env is None else env
    unknown = set(d) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}")
    urls = _hub_urls(d, environ)
    token = environ.get("OBSHUB_AGENT_TOKEN") or _typed(d, "token", str, "")
    if not token:
        raise ConfigError("token: missing (the project's ingest token)")
    raw_inputs = d.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ConfigError("inputs: missing (at least one [[inputs]] table)")
    kw: dict[str, Any] = {}
    for k in _INT_KEYS:
        if k in d:
            kw[k] = _typed(d, k, int, "")
            if kw[k] <= 0:
                raise ConfigError(f"{k}: must be > 0")
    for k in _FLOAT_KEYS:
        if k in d:
            kw[k] = _typed(d, k, float, "")
    comp = _typed(d, "compression", str, "", "zstd")
    if comp not in ("zstd", "gzip", "none"):
        raise ConfigError(f"compression: expected zstd | gzip | none, got {comp!r}")
    metrics = _typed(d, "metrics_address", str, "", "127.0.0.1:9480")
    if metrics.strip().lower() == "off":
        metrics = ""
    m = re.match(r"^[^:]*:(\d+)$", metrics)
    if metrics and (m is None or int(m.group(1)) > 65535):
        raise ConfigError(f'metrics_address: expected HOST:PORT (port 0 = any free port), "off" or "", got {metrics!r}')
    log_level = _typed(d, "log_level", str, "", "info")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level: expected debug | info | warning | error, got {log_level!r}")
    tz = _typed(d, "timezone", str, "")
    if tz:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(tz)
        except Exception:
            raise ConfigError(f"timezone: unknown zone {tz!r}") from None
    cfg = AgentConfig(
        hub=urls[0],
        hub_urls=urls if len(urls) > 1 else (),
        token=token,
        host=_typed(d, "host", str, "") or socket.gethostname(),
        state_dir=Path(os.path.expanduser(_typed(d, "state_dir", str, "", "/var/lib/obshub-agent"))),
        inputs=tuple(_input(i, x) for i, x in enumerate(raw_inputs)),
        timezone=tz,
        compression=comp,
        spool_fsync=_typed(d, "spool_fsync", bool, "", True),
        metrics_address=metrics,
        log_level=log_level.lower(),
        **kw,
    )
    if cfg.spool_segment_bytes > cfg.spool_max_bytes // 4:
        # at least 4 segments fit, so acked space is returned while the hub is catching up
        cfg = _replace(cfg, spool_segment_bytes=max(4096, cfg.spool_max_bytes // 4))
    return cfg


def _replace(cfg: AgentConfig, **kw: Any) -> AgentConfig:
    from dataclasses import replace

    return replace(cfg, **kw)


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(doc)

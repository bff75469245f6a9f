"""Check definitions from outside: a `[[checks]]` table of the hub config file or a
`POST /api/v1/checks` body -> `Check`, or a FieldError naming the field."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from obshub.errors import FieldError
from obshub.settings import parse_tables
from obshub.uptime.model import (
    DEFAULT_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    MAX_INTERVAL_S,
    MAX_TIMEOUT_S,
    MIN_INTERVAL_S,
    Check,
)
from obshub.uptime.probes import tls_context

__all__ = ["FIELDS", "config_checks", "parse_check"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # ids stay <= 128 chars; a label value
FIELDS = ("name", "target", "interval_s", "timeout_s", "expect_status", "expect_body", "project", "public", "ca")


def _target(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError("target", "expected a URL: http://…, https://… or tcp://host:port")
    target = raw.strip()
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError as e:
        raise FieldError("target", f"not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https", "tcp"):
        raise FieldError("target", f"scheme {parts.scheme or '(none)'!r} not supported: use http, https or tcp")
    if not parts.hostname:
        raise FieldError("target", "has no host")
    if parts.scheme == "tcp" and (port is None or parts.path not in ("", "/") or parts.query):
        raise FieldError("target", "a TCP check is tcp://host:port")
    return target


def _number(raw: Any, field: str, lo: float, hi: float, integer: bool) -> Any:
    ok = isinstance(raw, int) if integer else isinstance(raw, (int, float))
    if not ok or isinstance(raw, bool) or not lo <= raw <= hi:
        what = "an integer" if integer else "a number"
        raise FieldError(field, f"expected {what} from {lo:g} to {hi:g}, got {raw!r}")
    return raw


def _ca(raw: Any, source: str, target: str) -> str | None:
    """`ca`: a PEM file of the CAs an https target's certificate must chain to, instead of the
    public roots (an internal CA). The operator's only: a path on the hub's disk is not for an
    API client to name. Loaded here, so a missing or bad file stops the hub at start."""
    if raw is None:
        return None
    if source != "config":
        raise FieldError("ca", "only in the hub config file's [[checks]] tables")
    if not target.startswith("https://"):
        raise FieldError("ca", "only for https targets")
    if not isinstance(raw, str) or not raw:
        raise FieldError("ca", "expected the path of a PEM file of CA certificates")
    try:
        tls_context(raw)
    except (OSError, ssl.SSLError) as e:
        raise FieldError("ca", f"cannot load {raw!r} as PEM CA certificates ({e})") from None
    return raw


def parse_check(raw: Any, source: str = "config", project: str | None = None) -> Check:
    """Validate one definition (a `[[checks]]` table or a POST body). Raises FieldError."""
    if not isinstance(raw, Mapping):
        raise FieldError("body", f"expected an object, got {type(raw).__name__}")
    for key in raw:
        if key not in FIELDS:
            raise FieldError(str(key), f"unknown field (expected {', '.join(FIELDS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise FieldError("name", "required: 1-64 characters of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    target = _target(raw.get("target"))
    interval = _number(raw.get("interval_s", DEFAULT_INTERVAL_S), "interval_s", MIN_INTERVAL_S, MAX_INTERVAL_S, True)
    timeout = float(
        _number(
            raw.get("timeout_s", min(DEFAULT_TIMEOUT_S, interval)),
            "timeout_s",
            0.1,
            min(MAX_TIMEOUT_S, interval),
            False,
        )
    )
    http = not target.startswith("tcp://")
    statuses: tuple[int, ...] = ()
    if raw.get("expect_status") is not None:
        es = raw["expect_status"]
        items = es if isinstance(es, list) else [es]
        if not http:
            raise FieldError("expect_status", "only for http(s) targets")
        if not items or not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in items):
            raise FieldError("expect_status", f"expected an HTTP status 100-599 or a list of them, got {es!r}")
        statuses = tuple(items)
    body = raw.get("expect_body")
    if body is not None:
        if not http:
            raise FieldError("expect_body", "only for http(s) targets")
        if not isinstance(body, str) or not 1 <= len(body) <= 1024:
            raise FieldError("expect_body", "expected a string of 1-1024 characters")
    public = raw.get("public", False)
    if not isinstance(public, bool):
        raise FieldError("public", f"expected true or false, got {public!r}")
    ca = _ca(raw.get("ca"), source, target)
    proj = raw.get("project", "default")
    if not isinstance(proj, str) or not proj:
        raise FieldError("project", "expected a project name")
    if project is not None:  # API: the token decides the project
        if "project" in raw and proj != project:
            raise FieldError("project", f"a check is created in the token's project ({project!r}); omit the field")
        proj = project
    return Check(
        name=name,
        target=target,
        interval_s=interval,
        timeout_s=timeout,
        expect_status=statuses,
        expect_body=body,
        project=proj,
        source=source,
        public=public,
        ca=ca,
    )


def config_checks(raw: Sequence[Mapping[str, Any]]) -> list[Check]:
    """`Settings.checks` -> Checks; a bad table stops the hub at start, naming it and the key."""
    return parse_tables("checks", raw, parse_check, lambda c: (c.project, c.name))

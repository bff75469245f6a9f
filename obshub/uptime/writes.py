"""Writing checks: definitions (`POST`/`DELETE /api/v1/checks`, the retention refresh) and
probe results, each as an event stored through the ingest pipeline (obshub/ingest/pipeline.py)
like every other event."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from obshub.digest import Scrubber
from obshub.errors import Conflict, FieldError, NotFound, QueryError
from obshub.events import now_us
from obshub.ingest import pipeline
from obshub.settings import Settings
from obshub.store.base import Project, Store
from obshub.uptime.config import config_checks, parse_check
from obshub.uptime.model import SERVICE, Check, ProbeResult, public_target
from obshub.uptime.network import NetworkPolicy, literal_address
from obshub.uptime.queries import check_status, stored_checks

__all__ = [
    "Rules",
    "blank_event",
    "define_check",
    "delete_check",
    "record",
    "result_event",
    "result_level",
    "write_definition",
]


@cache
def hub_host() -> str:
    return socket.gethostname()


def blank_event() -> dict[str, Any]:
    """The fields every check event the hub writes shares, in the form a client would send:
    it is stored through the ingest pipeline like everything else (obshub/ingest/pipeline.py)."""
    return {
        "kind": "check",
        "level": "info",
        "service": SERVICE,
        "host": hub_host(),
        "logger": "obshub.checks",
        "attrs": {},
    }


def write_definition(
    store: Store, project_id: int, name: str, check: Check | None, at_us: int, scrubber: Scrubber | None = None
) -> bool:
    """Store a definition (or, with check=None, a tombstone). False if that id already existed
    (a concurrent replica wrote the same refresh). `scrubber`: the hub's (`Hub.scrubber`), as for
    every event it stores; None scrubs with the defaults."""
    ev = blank_event()
    attrs: dict[str, Any] = {"definition": True, "deleted": check is None}
    if check is None:
        message = f"check {name} deleted"
    else:
        attrs.update(check.definition())
        verb = "connect" if check.is_tcp else "GET"
        message = f"check {name} defined: {verb} {public_target(check.target)} every {check.interval_s} s"
    ev.update(id=f"checkdef:{project_id}:{name}:{at_us}", ts=at_us, name=name, message=message, attrs=attrs)
    return pipeline.store_events(store, project_id, [ev], 0, scrubber).accepted == 1


def result_level(up: bool, was_up: bool | None) -> str:
    """`error` when a check goes down (or its first known result is down), `warning` while it
    stays down, `info` when up: one failing check every 5 s is one `level:error` event per
    outage, not 720 an hour in every error search."""
    if up:
        return "info"
    return "warning" if was_up is False else "error"


def result_event(
    project_id: int, check: Check, slot: int, result: ProbeResult, at_us: int, was_up: bool | None = None
) -> dict[str, Any]:
    """One result as a client would send it (the pipeline normalizes it). `at_us` is when the
    probe ran; the id depends only on the slot, so every replica probing that slot writes the
    same id. `was_up`: the check's previous state (None: unknown)."""
    ev = blank_event()
    attrs: dict[str, Any] = {
        "up": result.up,
        "changed": was_up is None or was_up != result.up,
        "target": public_target(check.target),
        "slot": slot,
        "interval_s": check.interval_s,
    }
    if result.latency_ms is not None:
        attrs["latency_ms"] = result.latency_ms
    if result.status is not None:
        attrs["status"] = result.status
    if result.tls_expires_at is not None:
        attrs["tls_expires_at"] = result.tls_expires_at
    ev.update(
        id=f"check:{project_id}:{check.name}:{slot}",
        ts=at_us,
        level=result_level(result.up, was_up),
        message=result.message,
        name=check.name,
        attrs=attrs,
    )
    return ev


def record(
    store: Store,
    project_id: int,
    check: Check,
    slot: int,
    result: ProbeResult,
    at_us: int,
    was_up: bool | None = None,
    scrubber: Scrubber | None = None,
) -> bool:
    """Store one result through the ingest pipeline; False when that slot was already stored
    (by another replica)."""
    ev = result_event(project_id, check, slot, result, at_us, was_up)
    return pipeline.store_events(store, project_id, [ev], now_us(), scrubber).accepted == 1


def _in_config(config: Sequence[Check], project: Project, name: str) -> bool:
    return any(c.project == project.name and c.name == name for c in config)


@dataclass(frozen=True)
class Rules:
    """What a hub's settings say about API checks (`of(settings)`): where they may connect, how
    many a project may have, the config file's checks (whose names the API may not take)."""

    config: Sequence[Check]
    policy: NetworkPolicy
    max_per_project: int

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(config_checks(settings.checks), NetworkPolicy.of(settings), settings.checks_max_per_project)


def define_check(
    store: Store, project: Project, body: Any, rules: Rules, now_us: int, scrubber: Scrubber
) -> tuple[dict[str, Any], bool]:
    """POST: create or replace an API check. Returns (its status, created?)."""
    try:
        check = parse_check(body, "api", project.name)
    except FieldError as e:
        raise QueryError(str(e)) from None
    host = urlsplit(check.target).hostname or ""
    addr = literal_address(host)
    why = rules.policy.refusal(addr) if addr is not None else None
    if why is not None:  # a name is judged when probed, on what it resolves to then (network.py)
        raise QueryError(
            f"target: {host} is {why}: the hub's network policy for checks refuses it (settings "
            "checks_allow_networks, checks_deny_networks)"
        )
    if _in_config(rules.config, project, check.name):
        raise Conflict(f"name: check {check.name!r} is declared in the hub config file; change it there")
    for key, value in check.definition().items():
        if scrubber.changes_attr(key, value):  # stored filtered, the check could not be read back
            raise QueryError(
                f"{key}: the hub's scrubbing (`scrub`, `scrub_keys`) would filter this field when the "
                "definition is stored, so the check could not be read back; change the value or the scrub_keys setting"
            )
    stored = stored_checks(store, project.id, project.name)
    created = check.name not in stored
    if created and len(stored) >= rules.max_per_project:
        raise Conflict(
            f"project {project.name!r} has {len(stored)} checks, the most the hub's checks_max_per_project "
            f"setting ({rules.max_per_project}) allows: delete one first"
        )
    if not write_definition(store, project.id, check.name, check, now_us, scrubber):
        raise Conflict(f"name: check {check.name!r} was changed at the same microsecond; retry")
    return check_status(store, project.id, check, now_us), created


def delete_check(
    store: Store, project: Project, name: str, rules: Rules, now_us: int, scrubber: Scrubber
) -> dict[str, Any]:
    if _in_config(rules.config, project, name):
        raise Conflict(f"check {name!r} is declared in the hub config file; remove it there")
    if name not in stored_checks(store, project.id, project.name):
        raise NotFound(f"no check named {name!r}")
    write_definition(store, project.id, name, None, now_us, scrubber)
    return {"deleted": name}

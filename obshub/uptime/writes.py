"""Writing checks: definitions (`POST`/`DELETE /api/v1/checks`, the retention refresh) and
probe results, each as an event stored through the ingest pipeline (obshub/ingest/pipeline.py)
like every other event."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from functools import cache
from typing import Any

from obshub.digest import Scrubber
from obshub.errors import Conflict, FieldError, NotFound, QueryError
from obshub.events import now_us
from obshub.ingest import pipeline
from obshub.store.base import Project, Store
from obshub.uptime.config import parse_check
from obshub.uptime.model import SERVICE, Check, ProbeResult, public_target
from obshub.uptime.queries import check_status, stored_checks

__all__ = ["blank_event", "define_check", "delete_check", "record", "result_event", "result_level", "write_definition"]


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


def define_check(
    store: Store, project: Project, body: Any, config: Sequence[Check], now_us: int, scrubber: Scrubber
) -> tuple[dict[str, Any], bool]:
    """POST: create or replace an API check. Returns (its status, created?)."""
    try:
        check = parse_check(body, "api", project.name)
    except FieldError as e:
        raise QueryError(str(e)) from None
    if _in_config(config, project, check.name):
        raise Conflict(f"name: check {check.name!r} is declared in the hub config file; change it there")
    for key, value in check.definition().items():
        if scrubber.changes_attr(key, value):  # stored filtered, the check could not be read back
            raise QueryError(
                f"{key}: the hub's scrubbing (`scrub`, `scrub_keys`) would filter this field when the "
                "definition is stored, so the check could not be read back; change the value or the scrub_keys setting"
            )
    created = check.name not in stored_checks(store, project.id, project.name)
    if not write_definition(store, project.id, check.name, check, now_us, scrubber):
        raise Conflict(f"name: check {check.name!r} was changed at the same microsecond; retry")
    return check_status(store, project.id, check, now_us), created


def delete_check(
    store: Store, project: Project, name: str, config: Sequence[Check], now_us: int, scrubber: Scrubber
) -> dict[str, Any]:
    if _in_config(config, project, name):
        raise Conflict(f"check {name!r} is declared in the hub config file; remove it there")
    if name not in stored_checks(store, project.id, project.name):
        raise NotFound(f"no check named {name!r}")
    write_definition(store, project.id, name, None, now_us, scrubber)
    return {"deleted": name}

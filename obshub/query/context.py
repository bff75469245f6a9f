"""The lines around one event (the web UI's `/context/<event id>`): the same host or the same
session, `n` lines either side of it in (ts, id) order, or its whole request (the trace, up to
`CONTEXT_MAX * 5` lines: a request is bounded where a host's stream is not)."""

from __future__ import annotations

from typing import Any

from obshub.events import to_public
from obshub.query.search import trace
from obshub.store.base import SearchRequest, Store
from obshub.store.querylang import Field, Node

__all__ = ["BY", "CONTEXT_MAX", "context"]

CONTEXT_MAX = 200  # lines either side; the page clamps `n` to this
BY = {"host": "host", "request": "request_id", "session": "session_id"}  # kind of context -> the field it follows


def _find(store: Store, project_id: int, event_id: str) -> dict[str, Any] | None:
    rows = store.search(project_id, SearchRequest(Field("id", "=", event_id, True), None, None, 1))
    return rows[0] if rows else None


def _around(store: Store, project_id: int, anchor: dict[str, Any], node: Node, n: int) -> list[dict[str, Any]]:
    key = (anchor["ts"], anchor["id"])
    before = store.search(project_id, SearchRequest(node, None, None, n, key, False))
    after = store.search(project_id, SearchRequest(node, None, None, n, key, True))
    return [to_public(e) for e in [*reversed(before), anchor, *after]]


def context(store: Store, project_id: int, event_id: str, by: str, n: int) -> dict[str, Any]:
    """`anchor` (None: no such event), `events` oldest first, and `why` there are none when the
    anchor lacks the field `by` follows (a line without a request id has no request)."""
    anchor = _find(store, project_id, event_id)
    if anchor is None:
        return {"anchor": None, "events": [], "why": f"no event with id {event_id!r} in this project"}
    key = BY[by]
    value = anchor.get(key)
    if not value:
        return {
            "anchor": to_public(anchor),
            "events": [],
            "why": f"this event has no {key}, so there is no {by} context; try another tab",
        }
    if by == "request":
        t = trace(store, project_id, value, cap=CONTEXT_MAX * 5)
        return {"anchor": to_public(anchor), "events": t["events"], "why": None, "truncated": t["truncated"]}
    return {
        "anchor": to_public(anchor),
        "events": _around(store, project_id, anchor, Field(key, "=", value, True), n),
        "why": None,
        "value": value,
    }

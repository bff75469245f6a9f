"""Search, trace and user timeline over any `Store`.

A trace is every event whose request_id or trace_id is the id, on every host, oldest first. A
user timeline is the user's own events plus *every* event of the requests they made, so the
lines a server logged before the app knew the user (auth middleware, proxies) are there too.

The timeline is ordered on corrected time (raw `ts` minus the host's estimated clock skew,
`obshub.digest.skew`): with one host 1.5 s slow, raw order puts a request's call to that host
before the request itself, and its entry host -- hence every "host switch" -- would be wrong.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from obshub.digest.skew import corrected_ts
from obshub.errors import QueryError
from obshub.events import format_ts, to_public
from obshub.store.base import SearchRequest, Store
from obshub.store.querylang import Field, Node, Or, QuerySyntaxError, parse

__all__ = ["decode_cursor", "encode_cursor", "parse_query", "search", "trace", "trace_query", "user_timeline"]

MAX_LIMIT = 1000  # one page; more is what cursors are for
TRACE_CAP = 10_000  # events per trace view; a larger trace says so (`truncated`)
TIMELINE_REQUEST_CAP = 500  # requests per user timeline page


def parse_query(q: str | None) -> Node | None:
    try:
        return parse(q or "")
    except QuerySyntaxError as e:
        raise QueryError(e.message, e.column) from None


def encode_cursor(ev: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ev["ts"], ev["id"]])).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    try:
        ts, id_ = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(ts, int) or not isinstance(id_, str):
            raise ValueError
        return ts, id_
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise QueryError("cursor: not a cursor returned by this API") from None


def search(store: Store, project_id: int, query: Node | None, start: int | None, end: int | None,
           limit: int = 100, cursor: str | None = None, ascending: bool = False) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: must be between 1 and {MAX_LIMIT}")
    after = decode_cursor(cursor)
    # One extra row tells whether another page exists without a count query.
    rows = store.search(project_id, SearchRequest(query, start, end, limit + 1, after, ascending))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"events": [to_public(e) for e in rows],
            "next_cursor": encode_cursor(rows[-1]) if more and rows else None}


def _all(store: Store, project_id: int, query: Node, start: int | None, end: int | None,
         cap: int) -> tuple[list[dict[str, Any]], bool]:
    """Every match oldest first, up to `cap`; the flag says whether more existed."""
    out: list[dict[str, Any]] = []
    after = None
    while True:
        want = min(MAX_LIMIT, cap + 1 - len(out))
        page = store.search(project_id, SearchRequest(query, start, end, want, after, True))
        out.extend(page)
        if len(page) < want or len(out) > cap:
            return out[:cap], len(out) > cap
        after = (page[-1]["ts"], page[-1]["id"])


def _uniq(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None))


def trace_query(trace_id: str) -> Node:
    """Every event of a trace: its request_id or its trace_id is the id."""
    return Or((Field("request_id", "=", trace_id, True), Field("trace_id", "=", trace_id, True)))


def trace(store: Store, project_id: int, trace_id: str, start: int | None = None, end: int | None = None,
          cap: int = TRACE_CAP) -> dict[str, Any]:
    query = trace_query(trace_id)
    events, truncated = _all(store, project_id, query, start, end, cap)
    return {
        "id": trace_id,
        "events": [to_public(e) for e in events],
        "hosts": _uniq([e["host"] for e in events]),
        "services": _uniq([e["service"] for e in events]),
        "start": to_public(events[0])["ts"] if events else None,
        "end": to_public(events[-1])["ts"] if events else None,
        "error_count": sum(1 for e in events if e["kind"] == "error" or e["level"] in ("error", "critical")),
        "truncated": truncated,
    }


def _no_skew(hosts: list[str]) -> Mapping[str, int]:
    return {}


def user_timeline(store: Store, project_id: int, user_id: str, start: int | None = None,
                  end: int | None = None, cap: int = TRACE_CAP,
                  offsets_of: Callable[[list[str]], Mapping[str, int]] = _no_skew) -> dict[str, Any]:
    """`offsets_of(hosts)` -> each host's clock offset in µs (`SkewEstimator.offsets`). Events
    and requests are ordered on corrected time and a request's entry host is the host of its
    first event on that time; events keep their raw `ts`, requests' `start`/`end` are corrected."""
    own, truncated = _all(store, project_id, Field("user_id", "=", user_id, True), start, end, cap)
    request_ids = _uniq([e["request_id"] for e in own])[:TIMELINE_REQUEST_CAP]
    by_id: dict[str, dict[str, Any]] = {e["id"]: e for e in own}
    for i in range(0, len(request_ids), 50):  # OR of 50 ids: one indexed lookup each
        chunk = request_ids[i:i + 50]
        q = Or(tuple(Field("request_id", "=", r, True) for r in chunk)) if len(chunk) > 1 \
            else Field("request_id", "=", chunk[0], True)
        evs, more = _all(store, project_id, q, None, None, cap)
        truncated = truncated or more
        for e in evs:
            by_id.setdefault(e["id"], e)
    hosts = sorted({e["host"] for e in by_id.values() if e["host"] is not None})
    offsets = offsets_of(hosts)
    # Ties on corrected time keep the store's (ts, id) order, so a host's own lines never swap.
    events = sorted(by_id.values(), key=lambda e: (corrected_ts(e["ts"], e["host"], offsets), e["ts"], e["id"]))
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["request_id"] is not None:
            groups.setdefault(e["request_id"], []).append(e)
    requests = []
    prev_host = None
    starts = {rid: corrected_ts(evs[0]["ts"], evs[0]["host"], offsets) for rid, evs in groups.items()}
    for rid, evs in sorted(groups.items(), key=lambda kv: (starts[kv[0]], kv[0])):
        req_hosts = _uniq([e["host"] for e in evs])
        first = req_hosts[0] if req_hosts else None
        requests.append({
            "request_id": rid,
            "hosts": req_hosts,
            "services": _uniq([e["service"] for e in evs]),
            "start": format_ts(starts[rid]),
            "end": format_ts(corrected_ts(evs[-1]["ts"], evs[-1]["host"], offsets)),
            "events": len(evs),
            "errors": sum(1 for e in evs if e["kind"] == "error" or e["level"] in ("error", "critical")),
            # The seed bug: a user's consecutive requests entering on different servers. Entry
            # hosts are compared, so a request fanning out to an api host is not a "switch".
            "previous_host": prev_host,
            "host_switch": prev_host is not None and first is not None and first != prev_host,
        })
        if first is not None:
            prev_host = first
    return {"user_id": user_id, "requests": requests, "events": [to_public(e) for e in events],
            "host_switches": sum(1 for r in requests if r["host_switch"]), "truncated": truncated,
            "skew_ms": {h: offsets.get(h, 0) // 1000 for h in hosts}}

"""Search, trace and user timeline over any `Store`.

A trace is every event whose request_id or trace_id is the id, on every host, oldest first. A
user timeline is the user's own events plus *every* event of the requests they made, so the
lines a server logged before the app knew the user (auth middleware, proxies) are there too.

The timeline is ordered on corrected time (raw `ts` minus the host's estimated clock skew,
`obshub.clock`): with one host 1.5 s slow, raw order puts a request's call to that host
before the request itself, and its entry host -- hence every "host switch" -- would be wrong.

It comes in pages of requests, newest first: the user's own events are walked from the
(project, user_id, ts) index and only the page's requests are expanded, so a page costs the
same for a user with 10 requests and one with 10,000.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from obshub.clock import corrected_ts
from obshub.errors import QueryError
from obshub.events import format_ts, to_public
from obshub.store.base import SearchRequest, Store
from obshub.store.querylang import MAX_DEPTH, MAX_TERMS, And, Field, Node, Or, QuerySyntaxError, parse

__all__ = [
    "MAX_DEPTH",
    "MAX_LIMIT",
    "MAX_TERMS",
    "check_limit",
    "decode_cursor",
    "encode_cursor",
    "facets",
    "parse_query",
    "search",
    "trace",
    "trace_query",
    "user_timeline",
]

MAX_LIMIT = 1000  # one page; more is what cursors are for
TRACE_CAP = 10_000  # events per trace view; a larger trace says so (`truncated`)
# The user timeline reads one page at a time, so its cost is bounded by the page, never by the
# user's history: at 5M events the heaviest bench user (4,534 requests in a week) took 94 s when
# every request was expanded at once.
TIMELINE_LIMIT = 50  # requests per timeline page by default
TIMELINE_MAX_LIMIT = 500
REQUEST_EVENTS_CAP = 100  # events per request on a timeline page; its trace shows up to TRACE_CAP
TIMELINE_WALK_CAP = 10_000  # the user's own events read per page (e.g. 10,000 analytics events, no request)
REQUEST_COUNT_CAP = 10_000  # `total_requests` is counted up to this


def parse_query(q: str | None) -> Node | None:
    try:
        return parse(q or "")
    except QuerySyntaxError as e:
        raise QueryError(e.message, e.column) from None


def check_limit(limit: int) -> int:
    """Every list's `limit` (search, error groups, analytics): 1..MAX_LIMIT. Checked here, not by
    each store: a negative limit once cut rows off the end of the error list, and on analytics
    returned every row on SQLite (`LIMIT -3`) and none on OpenSearch."""
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: must be between 1 and {MAX_LIMIT}")
    return limit


def encode_cursor(ev: dict[str, Any]) -> str:
    return _encode_key((ev["ts"], ev["id"]))


def _encode_key(key: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    try:
        ts, id_ = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        # A store's integers have 64 bits: a larger `ts` was a 500 (SQLite OverflowError).
        if not isinstance(ts, int) or not isinstance(id_, str) or not -(2**63) <= ts < 2**63:
            raise ValueError
        return ts, id_
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise QueryError("cursor: not a cursor returned by this API") from None


def search(
    store: Store,
    project_id: int,
    query: Node | None,
    start: int | None,
    end: int | None,
    limit: int = 100,
    cursor: str | None = None,
    ascending: bool = False,
) -> dict[str, Any]:
    check_limit(limit)
    after = decode_cursor(cursor)
    # One extra row tells whether another page exists without a count query.
    rows = store.search(project_id, SearchRequest(query, start, end, limit + 1, after, ascending))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"events": [to_public(e) for e in rows], "next_cursor": encode_cursor(rows[-1]) if more and rows else None}


def facets(
    store: Store,
    project_id: int,
    query: Node | None,
    start: int | None,
    end: int | None,
    fields: Sequence[str],
    limit: int,
) -> dict[str, Any]:
    """The top `limit` values with counts of each core field (level, service, host, env...) over
    the newest 10,000 matches (the search page's sidebar): `counted` and `approximate` say, as in
    analytics, whether more matched than were counted."""
    found = store.facets(project_id, query, start, end, fields, limit)
    return {"facets": found.value, "counted": found.counted, "approximate": found.approximate}


def _all(
    store: Store, project_id: int, query: Node, start: int | None, end: int | None, cap: int
) -> tuple[list[dict[str, Any]], bool]:
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


def trace(
    store: Store, project_id: int, trace_id: str, start: int | None = None, end: int | None = None, cap: int = TRACE_CAP
) -> dict[str, Any]:
    query = trace_query(trace_id)
    events, truncated = _all(store, project_id, query, start, end, cap)
    return {
        "id": trace_id,
        "events": [to_public(e) for e in events],
        "hosts": _uniq([e["host"] for e in events]),
        "services": _uniq([e["service"] for e in events]),
        "start": to_public(events[0])["ts"] if events else None,
        "end": to_public(events[-1])["ts"] if events else None,
        "error_count": sum(1 for e in events if _is_error(e)),
        "truncated": truncated,
    }


def _no_skew(hosts: list[str]) -> Mapping[str, int]:
    return {}


_Key = tuple[int, str]  # (ts, id): the order of the store's pages


@dataclass
class _Found:
    request_id: str
    key: _Key  # the user's newest own event in it (below the page's cursor): its place in the walk
    events: list[dict[str, Any]]  # oldest first, at most events_cap + 1


@dataclass
class _Walk:
    requests: list[_Found]  # newest first (by `key`), at most limit + 1
    others: list[dict[str, Any]]  # the user's events without a request id that were walked
    last: _Key | None  # the last event walked; None when the walk reached the user's oldest one


def _own(e: dict[str, Any], user_id: str, start: int | None, end: int | None) -> bool:
    return e["user_id"] == user_id and (start is None or e["ts"] >= start) and (end is None or e["ts"] < end)


def _listed_before(
    store: Store,
    project_id: int,
    user_id: str,
    found: _Found,
    start: int | None,
    end: int | None,
    before: _Key,
    events_cap: int,
) -> bool:
    """Whether a newer page listed this request: it has an own event at or after the cursor, so
    its newest own event (its place) is there. Its events usually tell; a request with more than
    `events_cap` events may hide it past the cap, and one indexed lookup settles that."""
    if any(_own(e, user_id, start, end) and (e["ts"], e["id"]) >= before for e in found.events):
        return True
    if len(found.events) <= events_cap:
        return False
    q = And((Field("user_id", "=", user_id, True), Field("request_id", "=", found.request_id, True)))
    newest = store.search(project_id, SearchRequest(q, max(start or 0, before[0]), end, 1))
    return bool(newest) and (newest[0]["ts"], newest[0]["id"]) >= before


def _walk(
    store: Store,
    project_id: int,
    user_id: str,
    start: int | None,
    end: int | None,
    limit: int,
    before: _Key | None,
    events_cap: int,
) -> _Walk:
    """Walk the user's own events newest first from `before` until limit + 1 requests are found
    (the extra one is the previous request of the page's oldest), or TIMELINE_WALK_CAP events.
    A request is placed by its newest own event, so a request already seen on a newer page (it
    straddles the cursor) is skipped. Only the requests the page needs are expanded."""
    found: list[_Found] = []
    seen: set[str] = set()
    others: list[dict[str, Any]] = []
    pos, walked = before, 0
    while len(found) <= limit:
        want = min(TIMELINE_WALK_CAP - walked, max(100, 8 * (limit + 1 - len(found))))
        if want <= 0:
            return _Walk(found, others, pos)
        rows = store.user_events(project_id, user_id, start, end, want, pos)
        walked += len(rows)
        fresh: dict[str, _Key] = {}
        for e in rows:
            rid = e["request_id"]
            if rid is None:
                others.append(e)
            elif rid not in seen:
                seen.add(rid)
                fresh[rid] = (e["ts"], e["id"])
        if rows:
            pos = (rows[-1]["ts"], rows[-1]["id"])
        todo = list(fresh)
        while todo and len(found) <= limit:
            chunk, todo = todo[: limit + 1 - len(found)], todo[limit + 1 - len(found) :]
            got = store.request_events(project_id, chunk, events_cap + 1)
            for rid in chunk:
                f = _Found(rid, fresh[rid], got.get(rid, []))
                if not f.events:  # deleted by retention since the walk read it
                    continue
                if before is not None and _listed_before(store, project_id, user_id, f, start, end, before, events_cap):
                    continue
                found.append(f)
        if len(rows) < want:
            return _Walk(found, others, None)
    return _Walk(found, others, pos)


def _is_error(e: dict[str, Any]) -> bool:
    return bool(e["kind"] == "error" or e["level"] in ("error", "critical"))


def user_timeline(
    store: Store,
    project_id: int,
    user_id: str,
    start: int | None = None,
    end: int | None = None,
    limit: int = TIMELINE_LIMIT,
    cursor: str | None = None,
    offsets_of: Callable[[list[str]], Mapping[str, int]] = _no_skew,
    events_cap: int = REQUEST_EVENTS_CAP,
) -> dict[str, Any]:
    """One page of the user's journey: up to `limit` requests, newest pages first (`cursor`:
    the previous page's `next_cursor`), each with its events on every host (the first
    `events_cap`). A request's place is its newest event with the user's id in [start, end).

    `offsets_of(hosts)` -> each host's clock offset in µs (`SkewEstimator.offsets`). Events
    and a page's requests are ordered on corrected time and a request's entry host is the host
    of its first event on that time; events keep their raw `ts`, requests' `start`/`end` are
    corrected. The page's oldest request is compared with the request before it (the first of
    the next page, read for that), so a host switch at a page boundary is marked too."""
    if not 1 <= limit <= TIMELINE_MAX_LIMIT:
        raise QueryError(f"limit: must be between 1 and {TIMELINE_MAX_LIMIT}")
    before = decode_cursor(cursor)
    walk = _walk(store, project_id, user_id, start, end, limit, before, events_cap)
    page, extra = walk.requests[:limit], walk.requests[limit:]
    # The next page starts below this page's oldest request (its events between there and the
    # extra request are walked again), or where a walk cut short by the cap stopped.
    nxt = page[-1].key if extra else walk.last
    by_id: dict[str, dict[str, Any]] = {}
    for f in page:
        for e in f.events[:events_cap]:
            by_id.setdefault(e["id"], e)
    for e in walk.others:
        if nxt is None or (e["ts"], e["id"]) >= nxt:
            by_id.setdefault(e["id"], e)
    hosts = sorted({e["host"] for e in by_id.values() if e["host"] is not None})
    offsets = offsets_of(sorted({*hosts, *(e["host"] for f in extra for e in f.events if e["host"] is not None)}))

    def fixed(e: dict[str, Any]) -> int:
        return corrected_ts(e["ts"], e["host"], offsets)

    # Ties on corrected time keep the store's (ts, id) order, so a host's own lines never swap.
    events = sorted(by_id.values(), key=lambda e: (fixed(e), e["ts"], e["id"]))
    ordered = {f.request_id: sorted(f.events[:events_cap], key=lambda e: (fixed(e), e["ts"], e["id"])) for f in page}
    starts = {rid: fixed(evs[0]) for rid, evs in ordered.items()}
    prev_host = None
    if extra:
        first = min(extra[0].events[:events_cap], key=lambda e: (fixed(e), e["ts"], e["id"]))
        prev_host = first["host"]
    requests = []
    for f in sorted(page, key=lambda f: (starts[f.request_id], f.request_id)):
        evs = ordered[f.request_id]
        req_hosts = _uniq([e["host"] for e in evs])
        entry = req_hosts[0] if req_hosts else None
        requests.append(
            {
                "request_id": f.request_id,
                "hosts": req_hosts,
                "services": _uniq([e["service"] for e in evs]),
                "start": format_ts(starts[f.request_id]),
                "end": format_ts(fixed(evs[-1])),
                "events": len(evs),
                "errors": sum(1 for e in evs if _is_error(e)),
                # The seed bug: a user's consecutive requests entering on different servers. Entry
                # hosts are compared, so a request fanning out to an api host is not a "switch".
                "previous_host": prev_host,
                "host_switch": prev_host is not None and entry is not None and entry != prev_host,
                "truncated": len(f.events) > events_cap,
            }
        )
        if entry is not None:
            prev_host = entry
    total = store.count_user_requests(project_id, user_id, start, end, REQUEST_COUNT_CAP)
    return {
        "user_id": user_id,
        "requests": requests,
        "events": [to_public(e) for e in events],
        "host_switches": sum(1 for r in requests if r["host_switch"]),
        "truncated": nxt is not None or any(r["truncated"] for r in requests),
        "skew_ms": {h: offsets.get(h, 0) // 1000 for h in hosts},
        "total_requests": min(total, REQUEST_COUNT_CAP),
        "total_requests_capped": total > REQUEST_COUNT_CAP,
        "next_cursor": _encode_key(nxt) if nxt is not None else None,
    }

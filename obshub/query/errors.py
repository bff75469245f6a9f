"""Error groups as the API shows them: mutable state from the group record, numbers aggregated
from occurrences (no hot counter document to contend on), merged groups folded into their target.

`q` filters occurrences with the query language, so `host:web-2 user_id:42` lists the groups
that user hit on that host; a group shows only when at least one occurrence matches.

The list counts the occurrences of the last 14 days unless the caller gives `from`
(`DEFAULT_FROM`): counting every occurrence ever stored grew with the store (275 ms at 5M events
and still growing); a range reads only its own occurrences from a covering index.

The web UI's list draws a 24 h sparkline per group from one query (`sparks`): the past 24 h's
occurrences counted per group and hour by the store (a covering index on SQLite), instead of one
query per group. They used to read the newest 5,000 occurrences (older ones fell off) through a
walk of every event of the day: ~380 ms at 5M events.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from obshub.errors import NotFound, QueryError
from obshub.events import format_ts, now_us, to_public
from obshub.query.search import check_limit
from obshub.store.base import GROUP_STATES, GroupRecord, GroupStats, SearchRequest, Store
from obshub.store.querylang import Field, Node, Or

__all__ = [
    "DEFAULT_FROM",
    "GROUP_STATES",
    "activity",
    "get_group",
    "list_groups",
    "merge_groups",
    "set_state",
    "sparks",
]

NEW_FOR_US = 24 * 3600 * 1_000_000  # a group first seen in the last 24 h is "new"
HOUR_US = 3_600_000_000
SPARK_HOURS = 24
OCCURRENCE_CAP = 1_000  # occurrences the group page's chart and tags are drawn from
TAGS = ("host", "service", "release", "env", "user_id")
DEFAULT_FROM = "-14d"  # the list's occurrences when no `from` is given (`from=` empty: all of them)
_LEVEL_RANK = {"debug": 0, "info": 1, "warning": 2, "error": 3, "critical": 4}


def _fold(stats: list[GroupStats]) -> GroupStats | None:
    if not stats:
        return None
    return GroupStats(
        count=sum(s.count for s in stats),
        users=sum(s.users for s in stats),
        hosts=sorted({h for s in stats for h in s.hosts}),
        first_seen=min(s.first_seen for s in stats),
        last_seen=max(s.last_seen for s in stats),
    )


def _members(records: list[GroupRecord]) -> dict[str, list[str]]:
    """target id -> [target id, merged source ids...] (merges may chain: a -> b -> c)."""
    by_id = {r.id: r for r in records}

    def root(gid: str) -> str:
        seen = set()
        while (into := by_id[gid].merged_into) and into in by_id and gid not in seen:
            seen.add(gid)
            gid = into
        return gid

    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(root(r.id), []).append(r.id)
    return out


def _view(r: GroupRecord, st: GroupStats | None, now: int, members: list[str]) -> dict[str, Any]:
    return {
        "id": r.id,
        "title": r.title,
        "type": r.type,
        "culprit": r.culprit,
        "count": st.count if st else 0,
        "users": st.users if st else 0,
        "hosts": st.hosts if st else [],
        "first_seen": format_ts(st.first_seen if st else r.first_seen),
        "last_seen": format_ts(st.last_seen) if st else None,
        "state": r.state,
        "level": r.level,
        "version": r.version,
        "is_new": now - r.first_seen < NEW_FOR_US,
        "regressed": r.regressed_at is not None and r.state == "unresolved",
        "regressed_at": format_ts(r.regressed_at) if r.regressed_at else None,
        "merged": [m for m in members if m != r.id],
    }


def list_groups(
    store: Store,
    project_id: int,
    state: str | None,
    query: Node | None,
    start: int | None,
    end: int | None,
    limit: int = 200,
) -> dict[str, Any]:
    """Groups in `state` (None or "all": every state, like the web UI's "all" tab)."""
    check_limit(limit)
    if state == "all":
        state = None
    if state is not None and state not in GROUP_STATES:
        raise QueryError(f"state: expected one of {', '.join(GROUP_STATES)} or all")
    records = store.get_groups(project_id)
    by_id = {r.id: r for r in records}
    stats = store.group_stats(project_id, query, start, end)
    now = now_us()
    out = []
    for target, members in _members(records).items():
        r = by_id[target]
        if state is not None and r.state != state:
            continue
        st = _fold([stats[m] for m in members if m in stats])
        if st is None and (query is not None or start is not None or end is not None):
            continue  # nothing matched the filter
        out.append(_view(r, st, now, members))
    out.sort(key=lambda g: (g["last_seen"] or "", g["id"]), reverse=True)
    return {"groups": out[:limit]}


def _roots(records: list[GroupRecord]) -> dict[str, tuple[GroupRecord, list[str]]]:
    """Every group id -> (the group it stands for after merges, that group's members)."""
    by_id = {r.id: r for r in records}
    return {m: (by_id[target], ids) for target, ids in _members(records).items() for m in ids}


def _resolve(store: Store, project_id: int, group_id: str) -> tuple[GroupRecord, list[str]]:
    found = _roots(store.get_groups(project_id)).get(group_id)
    if found is None:
        raise NotFound(f"no error group {group_id!r}")
    return found


def _occurrences(members: list[str]) -> Node:
    return (
        Or(tuple(Field("group_id", "=", m, True) for m in members))
        if len(members) > 1
        else Field("group_id", "=", members[0], True)
    )


def get_group(store: Store, project_id: int, group_id: str, recent: int = 50) -> dict[str, Any]:
    r, members = _resolve(store, project_id, group_id)
    st = _fold(list(store.group_stats(project_id, None, None, None, members).values()))
    view = _view(r, st, now_us(), members)
    latest = store.search(project_id, SearchRequest(_occurrences(members), limit=recent))
    view["latest_event"] = to_public(latest[0]) if latest else None
    # The failing requests: one click from the group to every host's logs of that request.
    view["occurrences"] = [
        {
            "id": e["id"],
            "ts": format_ts(e["ts"]),
            "host": e["host"],
            "service": e["service"],
            "request_id": e["request_id"],
            "trace_id": e["trace_id"],
            "user_id": e["user_id"],
            "release": e["release"],
        }
        for e in latest
    ]
    return view


def set_state(store: Store, project_id: int, group_id: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or "state" not in body:
        raise QueryError('body: expected {"state": "unresolved" | "resolved" | "ignored"}')
    state = body["state"]
    if state not in GROUP_STATES:
        raise QueryError(f"state: expected one of {', '.join(GROUP_STATES)}")
    r, _ = _resolve(store, project_id, group_id)
    now = now_us()
    store.update_group(project_id, r.id, state=state, resolved_at=now if state == "resolved" else None)
    return get_group(store, project_id, r.id)


def merge_groups(store: Store, project_id: int, group_id: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("groups"), list) or not body["groups"]:
        raise QueryError('body: expected {"groups": [ids to merge into this one]}')
    sources = [str(g) for g in body["groups"]]
    roots = _roots(store.get_groups(project_id))
    # Every id is checked before anything changes: a merge that answers 404 merged nothing (it
    # once merged the sources listed before the unknown one).
    unknown = list(dict.fromkeys(g for g in (group_id, *sources) if g not in roots))
    if unknown:
        raise NotFound(f"no error group{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
    target = roots[group_id][0]
    for src in dict.fromkeys(roots[g][0].id for g in sources):
        if src != target.id:
            store.update_group(project_id, src, merged_into=target.id)
    return get_group(store, project_id, target.id)


def sparks(store: Store, project_id: int, groups: list[dict[str, Any]], now: int | None = None) -> dict[str, list[int]]:
    """Per listed group (`list_groups` views, merged groups folded in): its occurrences in each
    of the last 24 clock hours, the current one last. One store query for the whole list."""
    now = now_us() if now is None else now
    first = now - now % HOUR_US - (SPARK_HOURS - 1) * HOUR_US
    by_id: dict[str, list[int]] = {}
    for gid, buckets in store.group_series(project_id, first, now + 1, HOUR_US).items():
        counts = [0] * SPARK_HOURS
        for t, n in buckets:
            counts[(t - first) // HOUR_US] += n
        by_id[gid] = counts
    none = [0] * SPARK_HOURS
    return {
        g["id"]: [sum(c) for c in zip(*(by_id.get(m, none) for m in [g["id"], *g["merged"]]), strict=True)]
        for g in groups
    }


def activity(
    store: Store, project_id: int, group: dict[str, Any], now: int | None = None, cap: int = OCCURRENCE_CAP
) -> dict[str, Any]:
    """The group page's chart and tags, from the group's (a `get_group` view) newest `cap`
    occurrences: `points` per hour over the last 24 h (7 days when the oldest of them is older),
    `hours` they span, and `tags`: the 5 commonest values of host, service, release, env and
    user_id among them."""
    now = now_us() if now is None else now
    rows = store.search(project_id, SearchRequest(_occurrences([group["id"], *group["merged"]]), None, None, cap))
    hours = 24 if not rows or now - rows[-1]["ts"] <= 24 * HOUR_US else 24 * 7
    first = now - hours * HOUR_US
    counts = [0] * hours
    for e in rows:
        i = (e["ts"] - first) // HOUR_US
        if 0 <= i < hours:
            counts[i] += 1
    tags: dict[str, Counter[str]] = {k: Counter() for k in TAGS}
    for e in rows:
        for k in tags:
            if e.get(k):
                tags[k][e[k]] += 1
    return {
        "points": [{"t": format_ts(first + i * HOUR_US), "count": c} for i, c in enumerate(counts)],
        "hours": hours,
        "tags": {k: c.most_common(5) for k, c in tags.items() if c},
    }

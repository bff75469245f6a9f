"""Error groups: mutable records in `<prefix>-state`, counts as aggregations over occurrences.

A group doc (`_id` = `group:<project_id>:<group id>`) holds only what changes rarely: title,
state, resolution and regression times (no hot counter document). Counts, users,
hosts, first/last seen are aggregations over the `kind=error` events carrying `group_id`.

When: a flush writes its events first, then records the groups of the occurrences it stored
(`touch`, then `reopen`), and only then answers its callers: an acknowledged occurrence never
points at a missing group, and a batch of duplicates creates and reopens nothing. Its
duplicates' groups are created only if missing *and* carried by a stored occurrence (`adopt`):
that is a retry after a flush that stored the events but failed before their groups.

Concurrency: creation is `create` (first writer wins, the others see 409); state changes read
the doc and write it back with `if_seq_no`/`if_primary_term`, retrying on conflict, so a
regression flip racing a "resolve" from the UI never loses either. Regression is judged on
stored occurrences (max `received_at` after `resolved_at`), like the SQLite backend, so an
agent replaying an old batch reopens nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from opensearchpy import OpenSearch

from obshub.errors import Conflict, NotFound, StoreUnavailable
from obshub.store.base import GroupRecord, GroupSeen
from obshub.store.opensearch.client import guard
from obshub.store.opensearch.dsl import filters
from obshub.store.querylang import Node

__all__ = ["GROUP_FIELDS", "Groups"]

_NOT_INDEXED = {"type": "keyword", "index": False, "doc_values": False}
GROUP_FIELDS: dict[str, Any] = {
    "gid": {"type": "keyword"},
    "title": _NOT_INDEXED,
    "type": {"type": "keyword"},
    "culprit": _NOT_INDEXED,
    "level": {"type": "keyword"},
    "version": {"type": "keyword"},
    "state": {"type": "keyword"},
    "first_seen": {"type": "long"},
    "resolved_at": {"type": "long"},
    "regressed_at": {"type": "long"},
    "merged_into": {"type": "keyword"},
}
_RETRIES = 20  # optimistic-concurrency retries per group update (each ~2 ms)
_MAX_GROUPS = 10_000  # per aggregation / listing
_KNOWN_TTL_S = 5.0  # how long a group seen existing and unresolved skips the lookup before a write
_KNOWN_MAX = 100_000  # bounds that memory (cleared when full)


def _record(src: dict[str, Any]) -> GroupRecord:
    return GroupRecord(
        src["gid"],
        src["title"],
        src.get("type"),
        src.get("culprit"),
        src["level"],
        src["version"],
        src["state"],
        int(src["first_seen"]),
        src.get("resolved_at"),
        src.get("regressed_at"),
        src.get("merged_into"),
    )


class Groups:
    def __init__(self, client: OpenSearch, state_index: str, events: str, before_read: Callable[[], None]) -> None:
        self.client = client
        self.index = state_index
        self.events = events
        self._before_read = before_read
        self._known: dict[tuple[int, str], float] = {}  # (project, group) -> when seen existing, not resolved
        self._changed: dict[tuple[int, str], float] = {}  # (project, group) -> last state change by this hub

    @staticmethod
    def _id(project_id: int, gid: str) -> str:
        return f"group:{project_id}:{gid}"

    def _mget(self, project_id: int, gids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Realtime: {gid: doc with _seq_no/_primary_term} for the groups that exist."""
        if not gids:
            return {}
        with guard("get error groups"):
            resp = self.client.mget(index=self.index, body={"ids": [self._id(project_id, g) for g in gids]})
        return {d["_source"]["gid"]: d for d in resp["docs"] if d.get("found")}

    def _unknown(self, project_id: int, groups: Sequence[GroupSeen], stamp: float) -> list[GroupSeen]:
        return [g for g in groups if stamp - self._known.get((project_id, g.id), -_KNOWN_TTL_S) >= _KNOWN_TTL_S]

    def _remember(
        self, project_id: int, existing: dict[str, dict[str, Any]], gids: Sequence[str], stamp: float
    ) -> None:
        """Note the groups now known to exist and not be resolved (so the next writes skip the mget)."""
        for gid in gids:
            key = (project_id, gid)
            doc = existing.get(gid)
            if (doc is None or doc["_source"].get("state") != "resolved") and self._changed.get(key, -1.0) < stamp:
                if len(self._known) >= _KNOWN_MAX:
                    self._known.clear()
                self._known[key] = stamp

    def _create(self, project_id: int, g: GroupSeen, first_seen: int | None = None) -> bool:
        """Create a group record; False when it exists (another flush or hub made it: same content)."""
        try:
            with guard("create error group"):
                self.client.create(
                    index=self.index,
                    id=self._id(project_id, g.id),
                    body={
                        "kind": "group",
                        "project_id": project_id,
                        "gid": g.id,
                        "title": g.title,
                        "type": g.type,
                        "culprit": g.culprit,
                        "level": g.level,
                        "version": g.version,
                        "state": "unresolved",
                        "first_seen": g.first_seen if first_seen is None else first_seen,
                    },
                )
            return True
        except Conflict:
            return False

    def _refresh(self) -> None:
        with guard("refresh error groups"):
            self.client.indices.refresh(index=self.index)

    def touch(self, project_id: int, groups: Sequence[GroupSeen]) -> dict[str, dict[str, Any]]:
        """Create the groups of occurrences just stored that do not exist yet. Returns the
        resolved ones, for `reopen`: one mget serves both. A resolution landing after this read
        has `resolved_at` later than these occurrences' `received_at`, so missing it cannot miss
        a regression.

        Groups seen existing and not resolved within `_KNOWN_TTL_S` skip the mget (in steady
        state a burst of one bug pays no lookup at all). This hub's own state changes drop them
        from that memory at once; another hub's resolve is seen within the TTL, and an
        occurrence in that window still regresses the group with the next occurrence after it
        (regression is judged on stored occurrences received after the resolution)."""
        if not groups:
            return {}
        stamp = time.monotonic()
        groups = self._unknown(project_id, groups, stamp)
        if not groups:
            return {}
        existing = self._mget(project_id, [g.id for g in groups])
        self._remember(project_id, existing, [g.id for g in groups], stamp)
        created = [self._create(project_id, g) for g in groups if g.id not in existing]
        if any(created):
            self._refresh()
        return {g: d for g, d in existing.items() if d["_source"].get("state") == "resolved"}

    def adopt(self, project_id: int, groups: Sequence[GroupSeen], doc_ids: Sequence[str]) -> None:
        """Groups whose occurrences in a flush (events `doc_ids`) were all stored before: create
        the missing ones that a stored occurrence carries. That is a retry after a flush that
        stored the events and failed before their groups; a replay of events stored under no
        group (or another) creates nothing. Costs nothing for groups that exist (the same
        memory and mget as `touch`); a search only when one is missing."""
        if not groups:
            return
        stamp = time.monotonic()
        groups = self._unknown(project_id, groups, stamp)
        if not groups:
            return
        existing = self._mget(project_id, [g.id for g in groups])
        self._remember(project_id, existing, [g.id for g in groups if g.id in existing], stamp)
        missing = {g.id: g for g in groups if g.id not in existing}
        if not missing:
            return
        self._before_read()  # the duplicates' originals may have landed moments ago
        body = {
            "size": 0,
            "track_total_hits": False,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"project_id": project_id}},
                        {"ids": {"values": list(doc_ids)}},
                        {"terms": {"group_id": list(missing)}},
                    ]
                }
            },
            "aggs": {
                "g": {"terms": {"field": "group_id", "size": len(missing)}, "aggs": {"first": {"min": {"field": "ts"}}}}
            },
        }
        with guard("stored occurrences of error groups"):
            resp = self.client.search(index=self.events, body=body)
        created = [
            self._create(project_id, missing[b["key"]], int(b["first"]["value"]))
            for b in resp["aggregations"]["g"]["buckets"]
            if b["key"] in missing
        ]
        if any(created):
            self._refresh()

    def reopen(self, project_id: int, resolved: dict[str, dict[str, Any]]) -> None:
        """Resolved groups (docs from `touch`) with a stored occurrence received after the
        resolution regress."""
        if not resolved:
            return
        self._before_read()  # the occurrences were just written
        changed = False
        for gid, doc in resolved.items():
            for _ in range(_RETRIES):
                src = doc["_source"]
                if src.get("state") != "resolved":
                    break
                newest = self._newest_received(project_id, gid, int(src.get("resolved_at") or 0))
                if newest is None:
                    break
                try:
                    with guard("reopen error group"):
                        self.client.index(
                            index=self.index,
                            id=doc["_id"],
                            body={**src, "state": "unresolved", "regressed_at": newest},
                            params={"if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"]},
                        )
                    changed = True
                    break
                except Conflict:  # resolved again, or reopened by another hub: re-judge
                    fresh = self._mget(project_id, [gid]).get(gid)
                    if fresh is None:
                        break
                    doc = fresh
            else:
                raise StoreUnavailable(f"error group {gid}: too much contention")
        if changed:
            self._refresh()

    def _newest_received(self, project_id: int, gid: str, after: int) -> int | None:
        body = {
            "size": 0,
            "track_total_hits": False,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"project_id": project_id}},
                        {"term": {"group_id": gid}},
                        {"range": {"received_at": {"gt": after}}},
                    ]
                }
            },
            "aggs": {"newest": {"max": {"field": "received_at"}}},
        }
        with guard("error group regression"):
            resp = self.client.search(index=self.events, body=body)
        value = resp["aggregations"]["newest"]["value"]
        return int(value) if value is not None else None

    def get(self, project_id: int, ids: Sequence[str] | None = None) -> list[Any]:
        if ids is not None:
            found = self._mget(project_id, list(ids))
            return [_record(found[g]["_source"]) for g in ids if g in found]
        with guard("list error groups"):
            resp = self.client.search(
                index=self.index,
                body={
                    "query": {"bool": {"filter": [{"term": {"kind": "group"}}, {"term": {"project_id": project_id}}]}},
                    "size": _MAX_GROUPS,
                    "sort": [{"first_seen": "asc"}, {"gid": "asc"}],
                },
            )
        return [_record(h["_source"]) for h in resp["hits"]["hits"]]

    def stats(
        self, project_id: int, query: Node | None, start: int | None, end: int | None, ids: Sequence[str] | None = None
    ) -> dict[str, Any]:
        from obshub.store.base import GroupStats

        if ids is not None and not ids:
            return {}
        q = filters(project_id, query, start, end)
        q["bool"]["filter"] += [{"term": {"kind": "error"}}, {"exists": {"field": "group_id"}}]
        if ids is not None:
            q["bool"]["filter"].append({"terms": {"group_id": list(ids)}})
        body = {
            "query": q,
            "size": 0,
            "track_total_hits": False,
            "aggs": {
                "g": {
                    "terms": {"field": "group_id", "size": _MAX_GROUPS},
                    "aggs": {
                        # exact below 40,000 distinct users per group (HyperLogLog above; SQLite is exact)
                        "users": {"cardinality": {"field": "user_id", "precision_threshold": 40_000}},
                        "hosts": {"terms": {"field": "host", "size": 1_000, "order": {"_key": "asc"}}},
                        "first": {"min": {"field": "ts"}},
                        "last": {"max": {"field": "ts"}},
                    },
                }
            },
        }
        self._before_read()
        with guard("error group stats", query=True):
            resp = self.client.search(index=self.events, body=body)
        return {
            b["key"]: GroupStats(
                int(b["doc_count"]),
                int(b["users"]["value"]),
                [h["key"] for h in b["hosts"]["buckets"]],
                int(b["first"]["value"]),
                int(b["last"]["value"]),
            )
            for b in resp["aggregations"]["g"]["buckets"]
        }

    def series(self, project_id: int, start: int, end: int, interval_us: int) -> dict[str, list[tuple[int, int]]]:
        q = filters(project_id, None, start, end)
        q["bool"]["filter"] += [{"term": {"kind": "error"}}, {"exists": {"field": "group_id"}}]
        body = {
            "query": q,
            "size": 0,
            "track_total_hits": False,
            "aggs": {
                "g": {
                    "terms": {"field": "group_id", "size": _MAX_GROUPS},
                    "aggs": {"h": {"histogram": {"field": "ts", "interval": interval_us, "min_doc_count": 1}}},
                }
            },
        }
        self._before_read()
        with guard("error group series", query=True):
            resp = self.client.search(index=self.events, body=body)
        return {
            b["key"]: [(int(h["key"]), int(h["doc_count"])) for h in b["h"]["buckets"]]
            for b in resp["aggregations"]["g"]["buckets"]
        }

    def _forget(self, project_id: int, gid: str) -> None:
        """The group's state changes: the next write must look it up again."""
        if len(self._changed) >= _KNOWN_MAX:
            self._changed.clear()
            self._known.clear()
        self._changed[(project_id, gid)] = time.monotonic()
        self._known.pop((project_id, gid), None)

    def update(
        self,
        project_id: int,
        gid: str,
        state: str | None = None,
        resolved_at: int | None = None,
        merged_into: str | None = None,
    ) -> GroupRecord:
        self._forget(project_id, gid)
        for _ in range(_RETRIES):
            doc = self._mget(project_id, [gid]).get(gid)
            if doc is None:
                raise NotFound(f"no error group {gid!r}")
            src = dict(doc["_source"])
            if state is not None:
                src["state"], src["resolved_at"] = state, resolved_at
            if merged_into is not None:
                src["merged_into"] = merged_into
            if src == doc["_source"]:
                return _record(src)
            try:
                with guard("update error group"):
                    self.client.index(
                        index=self.index,
                        id=doc["_id"],
                        body=src,
                        params={
                            "if_seq_no": doc["_seq_no"],
                            "if_primary_term": doc["_primary_term"],
                            "refresh": "true",
                        },
                    )
                self._forget(project_id, gid)  # again: a write may have looked it up meanwhile
                return _record(src)
            except Conflict:
                continue
        raise StoreUnavailable(f"error group {gid}: too much contention")

"""Rollover and retention with core APIs only (the integ-test distribution has no ISM plugin
and no `_delete_by_query`; docs/opensearch.md).

- `rollover`: `POST <stream>/_rollover` with max_age / max_size / max_docs conditions; the
  cluster checks them and starts a new write index only when one is met.
- `delete_before(cutoff)`: backing indices whose newest event is older than the cutoff are
  deleted whole (cheap: a file delete, no merges). Old events left in indices that also hold
  newer ones (the boundary index, usually the current write index) are deleted by id with bulk
  `delete` ops, paged by (ts, id), so the result matches the SQLite backend exactly (at most
  500,000 per call; the next scheduled run continues).
- `maintain(now_us, retention_us)`: what the hub's scheduled job calls: rollover, then retention.
  Every replica runs it today (there is no job lease yet): rollover is conditional (a second
  call finds the new write index young and does nothing) and deleting an index already gone is
  a 404 to ignore, so replicas repeat checks rather than work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from opensearchpy import OpenSearch

from obshub.errors import StoreError
from obshub.store.opensearch.client import guard, reason

__all__ = ["Lifecycle"]

_DELETE_PAGE = 5_000  # ids per search page / bulk delete (~250 KB of actions)
# Per call: ~100 requests, a few seconds. With daily rollover almost everything old goes as whole
# indices; this bounds one job run if rollover was off for a while (the next run continues).
_DELETE_MAX_PER_CALL = 500_000
_ROLLOVER_AGE = "1d"  # one backing index per day: retention then frees space day by day
_ROLLOVER_SIZE = "25gb"  # primary shard size where search and recovery stay quick


class Lifecycle:
    def __init__(self, client: OpenSearch, stream: str, on_rollover: Callable[[], None] = lambda: None) -> None:
        self.client = client
        self.stream = stream
        self._on_rollover = on_rollover

    def backing_indices(self) -> list[str]:
        """Oldest first; the last one is the write index."""
        with guard("list backing indices"):
            resp = self.client.transport.perform_request("GET", f"/_data_stream/{self.stream}")
        streams = resp.get("data_streams") or []
        return [i["index_name"] for i in streams[0]["indices"]] if streams else []

    def rollover(
        self,
        max_age: str | None = _ROLLOVER_AGE,
        max_size: str | None = _ROLLOVER_SIZE,
        max_docs: int | None = None,
        force: bool = False,
    ) -> bool:
        conditions: dict[str, Any] = {}
        if max_age:
            conditions["max_age"] = max_age
        if max_size:
            conditions["max_size"] = max_size
        if max_docs:
            conditions["max_docs"] = max_docs
        body = None if force else {"conditions": conditions}
        with guard("rollover"):
            resp = self.client.indices.rollover(alias=self.stream, body=body)
        if resp.get("rolled_over"):
            self._on_rollover()
        return bool(resp.get("rolled_over"))

    def delete_before(self, cutoff: int) -> int:
        indices = self.backing_indices()
        if not indices:
            return 0
        write_index = indices[-1]
        with guard("retention stats"):
            self.client.indices.refresh(index=self.stream)
            resp = self.client.search(
                index=self.stream,
                body={
                    "size": 0,
                    "track_total_hits": False,
                    "aggs": {
                        "idx": {
                            "terms": {"field": "_index", "size": 10_000},
                            "aggs": {"newest": {"max": {"field": "ts"}}},
                        }
                    },
                },
            )
        total = 0
        whole: list[str] = []
        for b in resp["aggregations"]["idx"]["buckets"]:
            newest = b["newest"]["value"]
            if b["key"] != write_index and newest is not None and newest < cutoff:
                whole.append(b["key"])
                total += int(b["doc_count"])
        for index in whole:
            with guard("delete old index"):
                self.client.indices.delete(index=index)
        if whole:
            self._on_rollover()
        return total + self._delete_docs(cutoff)

    def _delete_docs(self, cutoff: int) -> int:
        deleted = 0
        body: dict[str, Any] = {
            "query": {"range": {"ts": {"lt": cutoff}}},
            "size": _DELETE_PAGE,
            "_source": False,
            "sort": [{"ts": "asc"}, {"id": "asc"}],
            "track_total_hits": False,
        }
        while deleted < _DELETE_MAX_PER_CALL:
            with guard("retention scan"):
                hits = self.client.search(index=self.stream, body=body)["hits"]["hits"]
            if not hits:
                break
            actions = b"".join(orjson.dumps({"delete": {"_index": h["_index"], "_id": h["_id"]}}) + b"\n" for h in hits)
            with guard("retention delete"):
                resp = self.client.transport.perform_request(
                    "POST",
                    "/_bulk",
                    body=actions,
                    params={"filter_path": "items.*.status,items.*.error"},
                    headers={"content-type": "application/x-ndjson"},
                )
            for item in resp.get("items", []):
                (res,) = item.values()
                if res.get("status") == 200:
                    deleted += 1
                elif res.get("status") != 404:
                    raise StoreError(f"retention could not delete {len(hits)} events: {reason(res.get('error'))}")
            body["search_after"] = hits[-1]["sort"]
        if deleted:
            with guard("refresh after retention"):
                self.client.indices.refresh(index=self.stream)
        return deleted

    def maintain(self, now_us: int, retention_us: int) -> dict[str, Any]:
        """Rollover, then retention; `retention_us <= 0` keeps everything (rollover only)."""
        rolled = self.rollover()
        deleted = self.delete_before(now_us - retention_us) if retention_us > 0 else 0
        return {"rolled_over": rolled, "deleted": deleted, "indices": len(self.backing_indices())}

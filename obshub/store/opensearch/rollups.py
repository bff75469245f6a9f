"""Rollups (`obshub.store.base.RollupRow`) in their own index, `<prefix>-rollups` (one shard:
a year of one metric per hour is ~9,000 rows, by 12 groups ~105,000). Each row's `_id` is
deterministic (project:metric:interval:bucket:group), so writing a bucket again overwrites it:
a bulk `index` is idempotent. A bucket's rows are replaced by indexing the new ones, then
deleting the range's others (a group gone from the top), both with refresh so the API reads
them at once (the SQLite twin is `sqlite/rollups.py`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from opensearchpy import OpenSearch

from obshub.errors import StoreError
from obshub.store.base import RollupRow
from obshub.store.opensearch.client import guard
from obshub.store.opensearch.mappings import small_index_body

__all__ = ["ROLLUP_FIELDS", "Rollups"]

kw = {"type": "keyword"}
ROLLUP_FIELDS: dict[str, Any] = {
    "project_id": {"type": "integer"},
    "metric": kw,
    "interval": kw,
    "t": {"type": "long"},
    "group": kw,
    "count": {"type": "long"},
    "value": {"type": "double"},  # _source keeps the JSON: counts read back as integers
}
_PAGE = 5_000
_MAX_ID_BYTES = 512


def _id(project_id: int, metric: str, interval: str, t: int, group: str) -> str:
    doc_id = f"{project_id}:{metric}:{interval}:{t}:{group}"
    if len(doc_id.encode()) <= _MAX_ID_BYTES:
        return doc_id
    return f"{project_id}:{metric}:{interval}:{t}:#sha256:{hashlib.sha256(group.encode()).hexdigest()}"


class Rollups:
    def __init__(self, client: OpenSearch, index: str, replicas: int | None) -> None:
        self.client = client
        self.index = index
        with guard("create the rollups index"):
            if not client.indices.exists(index=index):
                try:
                    with guard("create index"):
                        client.indices.create(index=index, body=small_index_body(ROLLUP_FIELDS, replicas))
                except StoreError as e:
                    if "resource_already_exists" not in str(e):  # another hub won the race
                        raise

    def _bulk(self, actions: list[dict[str, Any]], what: str) -> None:
        for i in range(0, len(actions), 2 * _PAGE):
            with guard(what):
                resp = self.client.bulk(body=actions[i : i + 2 * _PAGE], params={"refresh": "true"})
            if resp.get("errors"):
                failed = next(v for item in resp["items"] for v in item.values() if v.get("error"))
                raise StoreError(f"{what}: {failed['error']}")

    def _ids(self, query: dict[str, Any]) -> list[str]:
        """The _ids of the rows of one metric and interval matching, paged by (t, group): unique
        there."""
        out: list[str] = []
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "query": query,
                "size": _PAGE,
                "_source": False,
                "sort": [{"t": "asc"}, {"group": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            with guard("read rollups"):
                hits = self.client.search(index=self.index, body=body)["hits"]["hits"]
            out += [h["_id"] for h in hits]
            if len(hits) < _PAGE:
                return out
            after = hits[-1]["sort"]

    def _range(self, project_id: int, metric: str, interval: str, start: int, end: int) -> list[dict[str, Any]]:
        return [
            {"term": {"project_id": project_id}},
            {"term": {"metric": metric}},
            {"term": {"interval": interval}},
            {"range": {"t": {"gte": start, "lt": end}}},
        ]

    def put(self, project_id: int, metric: str, interval: str, start: int, end: int, rows: Sequence[RollupRow]) -> None:
        keep: set[str] = set()
        actions: list[dict[str, Any]] = []
        for r in rows:
            doc_id = _id(project_id, r.metric, r.interval, r.t, r.group)
            keep.add(doc_id)
            actions.append({"index": {"_index": self.index, "_id": doc_id}})
            actions.append(
                {
                    "project_id": project_id,
                    "metric": r.metric,
                    "interval": r.interval,
                    "t": r.t,
                    "group": r.group,
                    "count": r.count,
                    "value": r.value,
                }
            )
        if actions:
            self._bulk(actions, "write rollups")
        query = {"bool": {"filter": self._range(project_id, metric, interval, start, end)}}
        stale = [i for i in self._ids(query) if i not in keep]
        if stale:
            self._bulk([{"delete": {"_index": self.index, "_id": i}} for i in stale], "replace rollups")

    def series(
        self, project_id: int, metric: str, interval: str, start: int, end: int, group: str | None
    ) -> list[RollupRow]:
        flt = self._range(project_id, metric, interval, start, end)
        if group is not None:
            flt.append({"term": {"group": group}})
        out: list[RollupRow] = []
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "query": {"bool": {"filter": flt}},
                "size": _PAGE,
                "sort": [{"group": "asc"}, {"t": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            with guard("read rollups"):
                hits = self.client.search(index=self.index, body=body)["hits"]["hits"]
            for h in hits:
                s = h["_source"]
                out.append(RollupRow(metric, s["group"], interval, int(s["t"]), int(s["count"]), s.get("value")))
            if len(hits) < _PAGE:
                return out
            after = hits[-1]["sort"]

    def delete(self, before: int, project_id: int | None, metric: str | None) -> int:
        flt: list[dict[str, Any]] = [{"range": {"t": {"lt": before}}}]
        if project_id is not None:
            flt.append({"term": {"project_id": project_id}})
            if metric is not None:
                flt.append({"term": {"metric": metric}})
        deleted = 0
        while True:  # a page at a time: each delete is refreshed, so the next search finds the rest
            body = {"query": {"bool": {"filter": flt}}, "size": _PAGE, "_source": False}
            with guard("read rollups"):
                hits = self.client.search(index=self.index, body=body)["hits"]["hits"]
            if not hits:
                return deleted
            self._bulk([{"delete": {"_index": self.index, "_id": h["_id"]}} for h in hits], "delete rollups")
            deleted += len(hits)

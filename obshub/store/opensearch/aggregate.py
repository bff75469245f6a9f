"""`aggregate` on OpenSearch: terms, histogram, cardinality, stats and percentiles aggregations
(docs/aggregate.md). At most two searches:
1. the tree: `terms` per group level (ordered by count, then key, as SQLite's GROUP BY), each
   level's buckets with the measure (and, without groups, the `histogram`);
2. each level's `other` (events outside its top groups, or without the field): a `filters`
   aggregation of `must_not` the top keys, with the measure. With time buckets, this search
   also holds every group as a filter, each with a `histogram` on `ts` (µs since the epoch, a
   `long`: buckets at multiples of the interval, as `ts / i * i` on SQLite). Nesting the
   histogram under the terms instead would make (groups asked for) x buckets of them, and
   attribute levels ask for more groups than they keep (below): past OpenSearch's
   search.max_buckets (65,535); as filters they are exactly the cells the answer holds
   (obshub/query/aggregate.py bounds them to 25,000).

Attributes: a group by `attrs.k` reads `attrs_kv` ("k=<JSON>", mappings.py) restricted to the
key; numbers read `attrs_num.k` (doubles, numbers only: strings and booleans are not there).
Approximations (docs/aggregate.md): `cardinality` is HyperLogLog++ with precision_threshold
40,000 (counts below it are exact but for a hash collision), percentiles TDigest (compression
200). With more than one shard, a `terms` level may miss a group's documents on a shard.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from opensearchpy import OpenSearch

from obshub.store.aggregate import PERCENTILES, Path, attr_name, build
from obshub.store.base import AggBucket, AggKey, AggregateRequest, AggValue
from obshub.store.opensearch.client import guard
from obshub.store.opensearch.dsl import filters
from obshub.store.opensearch.mappings import attr_kv, num_field
from obshub.store.querylang import CORE_FIELDS

__all__ = ["Aggregator"]

_LUCENE_RE_SPECIAL = re.compile(r'([.?+*|{}\[\]()"\\#@&<>~-])')
PRECISION_THRESHOLD = 40_000  # cardinality's maximum: exact below it (HyperLogLog++)
COMPRESSION = 200  # TDigest: twice the default, ~0.5% rank error at the tails (docs/aggregate.md)
_NO_GROUP = ("message", "ts")

Cells = dict[tuple[Path, int | None], tuple[int, AggValue]]


class _Level:
    """How one group_by field reads: its terms aggregation, and its keys back as typed values."""

    def __init__(self, field: str, top: int) -> None:
        self.key = attr_name(field)
        if self.key is None and (field not in CORE_FIELDS or field in _NO_GROUP):
            raise ValueError(f"cannot group by {field!r}")
        self.field = field
        self.top = top

    def terms(self) -> dict[str, Any]:
        order = [{"_count": "desc"}, {"_key": "asc"}]
        if self.key is None:
            return {"field": self.field, "size": self.top, "order": order}
        # Ask for more: ties on count come back in string order ("k=10" < "k=4"), SQLite breaks
        # them by typed value; and true/false/arrays are not groups (`_value` drops them).
        prefix = _LUCENE_RE_SPECIAL.sub(r"\\\1", self.key + "=")
        return {"field": "attrs_kv", "size": 2 * self.top + 20, "order": order, "include": prefix + ".*"}

    def buckets(self, agg: dict[str, Any]) -> list[tuple[AggKey, dict[str, Any]]]:
        """The top keys with their buckets, ordered as SQLite orders them."""
        out: list[tuple[AggKey, dict[str, Any]]] = []
        for b in agg["buckets"]:
            if self.key is None:
                out.append((b["key"], b))
                continue
            value = orjson.loads(b["key"][len(self.key) + 1 :])
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                out.append((value, b))
        out.sort(key=lambda kb: (-int(kb[1]["doc_count"]), isinstance(kb[0], str), kb[0]))
        return out[: self.top]

    def match(self, keys: list[AggKey]) -> dict[str, Any]:
        if self.key is None:
            return {"terms": {self.field: keys}}
        return {"terms": {"attrs_kv": [attr_kv(self.key, k) for k in keys]}}


def _measure(req: AggregateRequest) -> dict[str, Any] | None:
    if req.op == "count":
        return None
    if req.field is None:
        raise ValueError(f"{req.op}: needs a field")
    if req.op == "unique":
        if req.field not in CORE_FIELDS:
            raise ValueError(f"unique: {req.field!r} is not a core field")
        return {"cardinality": {"field": req.field, "precision_threshold": PRECISION_THRESHOLD}}
    key = attr_name(req.field)
    if key is None:
        raise ValueError(f"{req.op}: {req.field!r} is not a numeric attribute")
    if req.op in PERCENTILES:
        pct = {"field": num_field(key), "percents": [PERCENTILES[req.op] * 100], "keyed": False}
        return {"percentiles": {**pct, "tdigest": {"compression": COMPRESSION}}}
    return {"stats": {"field": num_field(key)}}


def _value(req: AggregateRequest, b: dict[str, Any], n: int) -> AggValue:
    if req.op == "count":
        return n
    m = b["m"]
    if req.op == "unique":
        return int(m["value"] or 0)
    if req.op in PERCENTILES:
        v = m["values"][0]["value"] if m["values"] else None
        return None if v is None or not n else float(v)
    if not m["count"]:
        return None
    return float(m[req.op])


class Aggregator:
    def __init__(self, client: OpenSearch, index: str, before_read: Callable[[], None]) -> None:
        self.client = client
        self.index = index
        self._before_read = before_read

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        self._before_read()
        with guard("aggregate", query=True):
            return self.client.search(index=self.index, body=body)  # type: ignore[no-any-return]

    def aggregate(self, project_id: int, req: AggregateRequest) -> AggBucket:
        if len(req.group_by) > 2:
            raise ValueError("group_by: at most two fields")
        levels = [_Level(f, req.top) for f in req.group_by]
        measure = _measure(req)
        leaf: dict[str, Any] = {} if measure is None else {"m": measure}
        bucketed = dict(leaf)
        if req.interval:
            hist = {"field": "ts", "interval": req.interval, "min_doc_count": 1}
            bucketed["h"] = {"histogram": hist, **({"aggs": {"m": measure}} if measure else {})}
        aggs: dict[str, Any] = dict(leaf if levels else bucketed)
        for lv in reversed(levels):  # innermost first
            aggs = {**leaf, "g": {"terms": lv.terms(), **({"aggs": aggs} if aggs else {})}}
        query = filters(project_id, req.query, req.start, req.end)
        body = {"query": query, "size": 0, "track_total_hits": True, **({"aggs": aggs} if aggs else {})}
        resp = self._search(body)
        cells: Cells = {}
        root = resp.get("aggregations", {})
        self._cells(req, root, (), int(resp["hits"]["total"]["value"]), cells)
        top1: list[AggKey] = []
        top2: dict[AggKey, list[AggKey]] = {}
        if not levels:
            return build(req, top1, top2, cells)
        for k1, b1 in levels[0].buckets(root["g"]):
            top1.append(k1)
            self._cells(req, b1, (k1,), int(b1["doc_count"]), cells)
            if len(levels) > 1:
                for k2, b2 in levels[1].buckets(b1["g"]):
                    top2.setdefault(k1, []).append(k2)
                    self._cells(req, b2, (k1, k2), int(b2["doc_count"]), cells)
        self._others(req, query, levels, bucketed, top1, top2, cells)
        return build(req, top1, top2, cells)

    @staticmethod
    def _cells(req: AggregateRequest, b: dict[str, Any], path: Path, n: int, cells: Cells) -> None:
        cells[(path, None)] = (n, _value(req, b, n))
        for h in b.get("h", {}).get("buckets", []):
            c = int(h["doc_count"])
            cells[(path, int(h["key"]))] = (c, _value(req, h, c))

    def _others(
        self,
        req: AggregateRequest,
        query: dict[str, Any],
        levels: list[_Level],
        bucketed: dict[str, Any],
        top1: list[AggKey],
        top2: dict[AggKey, list[AggKey]],
        cells: Cells,
    ) -> None:
        """Each level's `other`, and with time buckets every cell's series: one `filters`
        aggregation, a filter per cell."""
        named: dict[str, tuple[Path, dict[str, Any]]] = {}
        if req.interval:
            named["all"] = ((), {"match_all": {}})
        if top1:
            named["o"] = ((None,), {"bool": {"must_not": [levels[0].match(top1)]}})
        for i, k1 in enumerate(top1):
            if req.interval:
                named[f"g{i}"] = ((k1,), levels[0].match([k1]))
            if len(levels) < 2:
                continue
            nots = [levels[1].match(top2[k1])] if top2.get(k1) else []
            named[f"o{i}"] = ((k1, None), {"bool": {"filter": [levels[0].match([k1])], "must_not": nots}})
            for j, k2 in enumerate(top2.get(k1, []) if req.interval else []):
                named[f"g{i}.{j}"] = ((k1, k2), {"bool": {"filter": [levels[0].match([k1]), levels[1].match([k2])]}})
        if named:
            agg: dict[str, Any] = {"filters": {"filters": {k: f for k, (_, f) in named.items()}}}
            if bucketed:
                agg["aggs"] = bucketed
            resp = self._search({"query": query, "size": 0, "track_total_hits": False, "aggs": {"o": agg}})
            for name, b in resp["aggregations"]["o"]["buckets"].items():
                self._cells(req, b, named[name][0], int(b["doc_count"]), cells)
        if not top1:  # no group at all: the other events are every event
            for (path, t), cv in list(cells.items()):
                if path == ():
                    cells[((None,), t)] = cv

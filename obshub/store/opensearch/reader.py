"""Reads: search with `search_after`, counts, facets and the analytics aggregations.

Search pages by (ts, id) like the SQLite backend: `search_after` is exact and stateless, so a
cursor survives hub restarts and load balancing across replicas. A PIT would freeze the view
between pages, which a live log view does not want (new events should appear).
"""

from __future__ import annotations

import copy
import heapq
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from opensearchpy import OpenSearch

from obshub.errors import StoreError, StoreOverloaded, StoreUnavailable
from obshub.store.base import (
    AGGREGATE_MEASURES,
    CHECK_SERIES_MAX,
    FACET_SAMPLE,
    Aggregate,
    CheckBucket,
    EventUnit,
    Sampled,
    SearchRequest,
)
from obshub.store.opensearch.client import guard, reason
from obshub.store.opensearch.dsl import compile_query, filters
from obshub.store.opensearch.mappings import attr_kv, from_doc, num_field
from obshub.store.querylang import CORE_FIELDS, Field, Node, attr_key

__all__ = ["Reader"]

_MAX_WINDOW = 10_000  # index.max_result_window: one page never asks for more
_SPLITS = 4  # parallel ranges of one analysis step (Store.event_rows)
_SPLIT_MIN = 50_000  # rows per range at least: below, one stream
_MAX_PROPS = 1_000  # distinct attribute keys listed per event name (256 per event at most)
_LUCENE_RE_SPECIAL = re.compile(r'([.?+*|{}\[\]()"\\#@&<>~])')
_SOURCE = {"excludes": ["@timestamp", "project_id", "attrs_keys", "attrs_kv", "attrs_num"]}


def _item_error(item: dict[str, Any], what: str) -> StoreError:
    """The exception `guard` would raise for one failed item of a multi-request answer."""
    status = int(item.get("status") or 0)
    msg = f"OpenSearch {status} during {what}: {reason(item)}"
    if status == 429:
        return StoreOverloaded(msg)
    if status >= 500:
        return StoreUnavailable(msg)
    return StoreError(msg)


class Reader:
    def __init__(self, client: OpenSearch, index: str, before_read: Callable[[], None]) -> None:
        self.client = client
        self.index = index
        self._before_read = before_read

    def _search(self, body: dict[str, Any], what: str, **params: Any) -> dict[str, Any]:
        self._before_read()
        with guard(what, query=True):
            return self.client.search(index=self.index, body=body, params=params)  # type: ignore[no-any-return]

    def search(self, project_id: int, req: SearchRequest) -> list[dict[str, Any]]:
        order = "asc" if req.ascending else "desc"
        body: dict[str, Any] = {
            "query": filters(project_id, req.query, req.start, req.end),
            "sort": [{"ts": order}, {"id": order}],
            "size": max(0, min(req.limit, _MAX_WINDOW)),
            "track_total_hits": False,
            "_source": _SOURCE,
        }
        if req.after is not None:
            body["search_after"] = [req.after[0], req.after[1]]
        if body["size"] == 0:
            return []
        resp = self._search(body, "search")
        return [from_doc(h["_source"]) for h in resp["hits"]["hits"]]

    # -- user timeline ---------------------------------------------------------------------------
    def user_events(
        self,
        project_id: int,
        user_id: str,
        start: int | None,
        end: int | None,
        limit: int,
        before: tuple[int, str] | None,
    ) -> list[dict[str, Any]]:
        return self.search(
            project_id, SearchRequest(Field("user_id", "=", user_id, True), start, end, limit, before, ascending=False)
        )

    def request_events(
        self, project_id: int, request_ids: Sequence[str], limit: int
    ) -> dict[str, list[dict[str, Any]]]:
        """One `_msearch` round trip: a search per request id, each capped at `limit`."""
        ids = list(dict.fromkeys(request_ids))
        if not ids or limit <= 0:
            return {}
        body: list[dict[str, Any]] = []
        for rid in ids:
            body += [
                {},
                {
                    "query": filters(project_id, Field("request_id", "=", rid, True), None, None),
                    "sort": [{"ts": "asc"}, {"id": "asc"}],
                    "size": min(limit, _MAX_WINDOW),
                    "track_total_hits": False,
                    "_source": _SOURCE,
                },
            ]
        self._before_read()
        with guard("request events"):
            resp = self.client.msearch(index=self.index, body=body)
        out: dict[str, list[dict[str, Any]]] = {}
        for rid, r in zip(ids, resp["responses"], strict=True):
            if "error" in r:  # one failed search fails the read, as a failed search would
                raise _item_error(r, "request events")
            hits = r["hits"]["hits"]
            if hits:
                out[rid] = [from_doc(h["_source"]) for h in hits]
        return out

    def count_user_requests(self, project_id: int, user_id: str, start: int | None, end: int | None, cap: int) -> int:
        # Exact up to cap + 1, unlike `cardinality` (HyperLogLog): a terms aggregation returns
        # every key when there are at most `size` (each shard sends at least `size`), and
        # `stats_bucket` counts them on the coordinating node, so no bucket list is sent back.
        q = filters(project_id, Field("user_id", "=", user_id, True), start, end)
        body = {
            "query": q,
            "size": 0,
            "track_total_hits": False,
            "aggs": {
                "r": {"terms": {"field": "request_id", "size": cap + 1}},
                "n": {"stats_bucket": {"buckets_path": "r>_count"}},
            },
        }
        resp = self._search(body, "count user requests", filter_path="aggregations.n.count")
        return int(resp.get("aggregations", {}).get("n", {}).get("count") or 0)

    def count(self, project_id: int, query: Node | None, start: int | None, end: int | None) -> int:
        self._before_read()
        with guard("count", query=True):
            resp = self.client.count(index=self.index, body={"query": filters(project_id, query, start, end)})
        return int(resp["count"])

    def aggregates(self, project_id: int, start: int, end: int, specs: Sequence[Aggregate]) -> list[float | None]:
        """`Store.aggregates`: one search over the window, one `filter` aggregation per spec
        (its query) with the measure beneath; 1,000 specs are 1,000 of the 65,536 buckets a
        search may make (search.max_buckets)."""
        aggs: dict[str, Any] = {}
        for i, spec in enumerate(specs):
            if spec.measure not in AGGREGATE_MEASURES:
                raise ValueError(f"measure: {spec.measure!r} is not one of {', '.join(AGGREGATE_MEASURES)}")
            agg: dict[str, Any] = {"filter": compile_query(spec.query) if spec.query is not None else {"match_all": {}}}
            if spec.measure == "users":
                agg["aggs"] = {"v": {"cardinality": {"field": "user_id", "precision_threshold": 40_000}}}
            elif spec.measure == "p95":
                agg["aggs"] = {"v": {"percentiles": {"field": num_field(spec.attr), "percents": [95]}}}
            elif spec.measure != "count":
                agg["aggs"] = {"v": {spec.measure: {"field": num_field(spec.attr)}}}
            aggs[f"a{i}"] = agg
        if not specs:
            return []
        body = {"query": filters(project_id, None, start, end), "size": 0, "track_total_hits": False, "aggs": aggs}
        got = self._search(body, "aggregates")["aggregations"]
        out: list[float | None] = []
        for i, spec in enumerate(specs):
            bucket = got[f"a{i}"]
            if spec.measure == "count":
                out.append(int(bucket["doc_count"]))
            elif spec.measure == "users":
                out.append(int(bucket["v"]["value"] or 0))
            else:
                v = bucket["v"]["values"]["95.0"] if spec.measure == "p95" else bucket["v"]["value"]
                out.append(None if v is None or bucket["doc_count"] == 0 else float(v))
        return out

    def _terms(
        self, query: dict[str, Any], field: str, limit: int, what: str, include: str | None = None
    ) -> list[tuple[str, int]]:
        terms: dict[str, Any] = {"field": field, "size": max(1, limit), "order": [{"_count": "desc"}, {"_key": "asc"}]}
        if include is not None:
            terms["include"] = include
        body = {"query": query, "size": 0, "track_total_hits": False, "aggs": {"t": {"terms": terms}}}
        resp = self._search(body, what)
        return [(b["key"], int(b["doc_count"])) for b in resp["aggregations"]["t"]["buckets"]]

    def _newest(self, query: dict[str, Any], sample: int, what: str) -> tuple[dict[str, Any], int, bool]:
        """`query` narrowed to its newest `sample` matches (by ts, then id, newest first: the
        order of search and of the SQLite store's sample), how many those are, and whether more
        matched. One search finds the cutoff (the sample-th match; `from` goes to 10,000 =
        index.max_result_window) and, with `track_total_hits: sample + 1`, whether it was not
        the last."""
        if not 1 <= sample <= min(FACET_SAMPLE, _MAX_WINDOW):
            raise ValueError(f"sample: must be between 1 and {FACET_SAMPLE}")
        body = {
            "query": query,
            "sort": [{"ts": "desc"}, {"id": "desc"}],
            "from": sample - 1,
            "size": 1,
            "track_total_hits": sample + 1,
            "_source": False,
        }
        resp = self._search(body, what)
        total = int(resp["hits"]["total"]["value"])
        if total <= sample:
            return query, total, False
        ts, id_ = resp["hits"]["hits"][0]["sort"]
        newer = {
            "bool": {
                "should": [
                    {"range": {"ts": {"gt": ts}}},
                    {"bool": {"filter": [{"term": {"ts": ts}}, {"range": {"id": {"gte": id_}}}]}},
                ],
                "minimum_should_match": 1,
            }
        }
        return {"bool": {"filter": [query, newer]}}, sample, True

    def facets(
        self,
        project_id: int,
        query: Node | None,
        start: int | None,
        end: int | None,
        fields: Sequence[str],
        limit: int,
        sample: int = FACET_SAMPLE,
    ) -> Sampled[dict[str, list[tuple[str, int]]]]:
        for f in fields:
            if f not in CORE_FIELDS or f in ("ts", "message", "id"):
                raise ValueError(f"cannot facet on {f!r}")
        q, counted, approximate = self._newest(filters(project_id, query, start, end), sample, "facets")
        if not fields:
            return Sampled({}, counted, approximate)
        order = [{"_count": "desc"}, {"_key": "asc"}]
        body = {
            "query": q,
            "size": 0,
            "track_total_hits": False,
            "aggs": {f: {"terms": {"field": f, "size": max(1, limit), "order": order}} for f in fields},
        }
        resp = self._search(body, "facets")
        return Sampled(
            {
                f: [(b["key"], int(b["doc_count"])) for b in resp["aggregations"][f]["buckets"]][: max(0, limit)]
                for f in fields
            },
            counted,
            approximate,
        )

    # -- analytics ---------------------------------------------------------------------------
    @staticmethod
    def _events(project_id: int, name: str | None, start: int | None, end: int | None) -> dict[str, Any]:
        q = filters(project_id, None, start, end)
        q["bool"]["filter"].append({"term": {"kind": "event"}})
        if name is not None:
            q["bool"]["filter"].append({"term": {"name": name}})
        return q

    def event_names(self, project_id: int, start: int | None, end: int | None, limit: int) -> list[tuple[str, int]]:
        if limit <= 0:
            return []
        return self._terms(self._events(project_id, None, start, end), "name", limit, "event names")

    def event_properties(
        self, project_id: int, name: str, start: int | None, end: int | None, sample: int = FACET_SAMPLE
    ) -> Sampled[list[str]]:
        q, counted, approximate = self._newest(self._events(project_id, name, start, end), sample, "event properties")
        body = {
            "query": q,
            "size": 0,
            "track_total_hits": False,
            "aggs": {"keys": {"terms": {"field": "attrs_keys", "size": _MAX_PROPS, "order": {"_key": "asc"}}}},
        }
        resp = self._search(body, "event properties")
        return Sampled(sorted(b["key"] for b in resp["aggregations"]["keys"]["buckets"]), counted, approximate)

    def property_values(
        self,
        project_id: int,
        name: str,
        prop: str,
        start: int | None,
        end: int | None,
        limit: int,
        sample: int = FACET_SAMPLE,
    ) -> Sampled[list[tuple[Any, int]]]:
        q, counted, approximate = self._newest(self._events(project_id, name, start, end), sample, "property values")
        if limit <= 0:
            return Sampled([], counted, approximate)
        key = attr_key(prop) if prop.startswith("attrs.") else (None if prop in CORE_FIELDS else prop)
        if key is None:
            field = "message.raw" if prop == "message" else prop  # ts, received_at: themselves
            return Sampled(self._terms(q, field, limit, "property values"), counted, approximate)
        prefix = key + "="
        include = _LUCENE_RE_SPECIAL.sub(r"\\\1", prefix) + ".*"
        out: list[tuple[Any, int]] = []
        # Ask for more than `limit`: buckets tied on count come back in string order ("10" < "4"),
        # SQLite breaks ties by typed value; re-sorting a wider set keeps the cut the same.
        wide = min(2 * limit + 20, 10_000)
        for kv, n in self._terms(q, "attrs_kv", wide, "property values", include=include):
            raw = kv[len(prefix) :]
            value = orjson.loads(raw)
            if isinstance(value, (list, dict)):
                value = raw  # SQLite's json_extract returns arrays as JSON text
            elif value is True or value is False:
                value = int(value)  # ... and booleans as 1/0
            out.append((value, n))
        # Mixed types order like SQLite: numbers before text.
        out.sort(key=lambda vn: (-vn[1], isinstance(vn[0], str), vn[0]))
        return Sampled(out[:limit], counted, approximate)

    def event_rows(
        self,
        project_id: int,
        steps: Sequence[Node | None],
        start: int,
        end: int,
        prop: str | None = None,
        unit: EventUnit = "user_id",
        ids: bool = True,
    ) -> Iterator[tuple[str, int, str, int, Any]]:
        """Each step's rows in pages sorted by (unit, ts, id), merged: one open page per step."""
        if unit not in ("user_id", "session_id"):
            raise ValueError(f"event_rows: unit {unit!r}")
        streams = [
            self._step_rows(project_id, q, i, start, end, prop if i == 0 else None, unit, ids)
            for i, q in enumerate(steps)
        ]
        return heapq.merge(*streams)

    def _step_rows(
        self,
        project_id: int,
        query: Node | None,
        step: int,
        start: int,
        end: int,
        prop: str | None,
        unit: EventUnit,
        ids: bool,
    ) -> Iterator[tuple[str, int, str, int, Any]]:
        """Pages of 10,000 with `search_after`: no painless, no PIT (an analysis reads each step
        once; rows written meanwhile may or may not be seen). A step of many rows is read as up
        to _SPLITS ranges of the unit, in parallel and each in order, chained: a search runs on
        one thread of the node, so one stream kept one core busy."""
        q = filters(project_id, query, start, end)
        q["bool"]["filter"].append({"term": {"kind": "event"}})
        q["bool"]["filter"].append({"exists": {"field": unit}})
        bounds = [None, *self._split_points(q, unit), None]
        with ThreadPoolExecutor(len(bounds) - 1, thread_name_prefix="event-rows") as pool:
            ranges = []
            for lo, hi in itertools.pairwise(bounds):
                rq = copy.deepcopy(q)
                cut = {k: v for k, v in (("gte", lo), ("lt", hi)) if v is not None}
                if cut:
                    rq["bool"]["filter"].append({"range": {unit: cut}})
                ranges.append(self._range_rows(pool, project_id, rq, step, prop, unit, ids))
            yield from itertools.chain.from_iterable(ranges)

    def _split_points(self, q: dict[str, Any], unit: EventUnit) -> list[str]:
        """Unit values cutting the step's rows into about equal ranges, from a random sample of
        1,000 rows; none under 2 x _SPLIT_MIN rows."""
        body = {
            "query": {"function_score": {"query": q, "random_score": {}}},
            "size": 1_000,
            "stored_fields": "_none_",
            "docvalue_fields": [unit],
            "track_total_hits": True,
        }
        resp = self._search(body, "event rows", filter_path="hits.total,hits.hits.fields")["hits"]
        n = min(_SPLITS, int(resp["total"]["value"]) // _SPLIT_MIN)
        sample = sorted(v for h in resp.get("hits", ()) for v in h["fields"].get(unit, ()))
        if n < 2 or not sample:
            return []
        return sorted({sample[len(sample) * i // n] for i in range(1, n)})

    def _range_rows(
        self,
        pool: ThreadPoolExecutor,
        project_id: int,
        q: dict[str, Any],
        step: int,
        prop: str | None,
        unit: EventUnit,
        ids: bool,
    ) -> Iterator[tuple[str, int, str, int, Any]]:
        """One range's rows; its first page is asked for at once, each next one while the
        previous is read (the node searches while the hub judges). Without ids the sort is
        (unit, ts): `search_after` then skips the rest of a tie at a page's end, rows that only
        repeat a (unit, ts) already given (100k rows: node CPU 0.8 s instead of 2.0 s)."""
        body: dict[str, Any] = {
            "query": q,
            "sort": [{unit: "asc"}, {"ts": "asc"}, *([{"id": "asc"}] if ids else [])],
            "size": _MAX_WINDOW,
            "track_total_hits": False,
            # The sort values are the row (keyword, long, keyword) and the property comes from
            # doc values: no stored field is read (`_id`, `_source`: one compressed block each,
            # at random in user order). 10k rows sorted by user: 180 ms instead of 360-760 ms
            # (`_source: false`), 150 ms instead of 420 ms with the property (`_source: attrs`).
            "stored_fields": "_none_",
        }
        if prop is not None:
            body["docvalue_fields"] = ["attrs_kv", "attrs_keys"]
        keep = "hits.hits.sort,hits.hits.fields"
        page = pool.submit(self._page, body, keep)

        def rows() -> Iterator[tuple[str, int, str, int, Any]]:
            nonlocal page
            while True:
                hits = page.result()
                if len(hits) == _MAX_WINDOW:
                    page = pool.submit(self._page, {**body, "search_after": hits[-1]["sort"]}, keep)
                if not ids:
                    last = None
                    for h in hits:
                        key = h["sort"]
                        if key != last:
                            yield key[0], key[1], "", step, None
                        last = key
                elif prop is None:
                    for h in hits:
                        user, ts, eid = h["sort"]
                        yield user, ts, eid, step, None
                else:
                    yield from self._with_values(project_id, hits, step, prop)
                if len(hits) < _MAX_WINDOW:
                    return

        return rows()

    def _page(self, body: dict[str, Any], keep: str) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = self._search(body, "event rows", filter_path=keep).get("hits", {}).get("hits", [])
        return hits

    def _with_values(
        self, project_id: int, hits: list[dict[str, Any]], step: int, prop: str
    ) -> Iterator[tuple[str, int, str, int, Any]]:
        """The rows of a page with `prop`'s JSON value, read from `attrs_kv` ("key=<json>"). A
        value that is not there (null, over attrs_kv's ignore_above, or a key with "=" making it
        ambiguous) while the key is: read from `_source`, in one search for the page."""
        prefix = prop + "="
        rows: list[tuple[str, int, str, int, Any]] = []
        unsure: list[int] = []
        for h in hits:
            user, ts, eid = h["sort"]
            fields = h.get("fields") or {}
            found = [kv for kv in fields.get("attrs_kv", ()) if kv.startswith(prefix)]
            value = None
            try:
                if len(found) != 1:
                    raise ValueError
                # Another key with "=" ("v=x" beside no "v") leaves no valid JSON after "v=".
                value = orjson.loads(found[0][len(prefix) :])
            except ValueError:
                if found or prop in fields.get("attrs_keys", ()):
                    unsure.append(len(rows))
            rows.append((user, ts, eid, step, value))
        if unsure:
            ids = [rows[i][2] for i in unsure]
            q = filters(project_id, None, None, None)
            q["bool"]["filter"].append({"terms": {"id": ids}})
            body = {"query": q, "size": len(ids), "_source": ["id", "attrs"], "track_total_hits": False}
            src = {h["_source"]["id"]: h["_source"] for h in self._search(body, "event rows")["hits"]["hits"]}
            for i in unsure:
                user, ts, eid, _, _ = rows[i]
                rows[i] = (user, ts, eid, step, (src.get(eid, {}).get("attrs") or {}).get(prop))
        return iter(rows)

    def check_series(
        self, project_id: int, names: Sequence[str], start: int, end: int, interval_us: int
    ) -> dict[str, list[CheckBucket]]:
        if len(names) > CHECK_SERIES_MAX:
            raise ValueError(f"check_series: at most {CHECK_SERIES_MAX} checks per call, got {len(names)}")
        if not names:
            return {}
        q = filters(project_id, None, start, end)
        q["bool"]["filter"] += [
            {"term": {"kind": "check"}},
            {"terms": {"name": list(names)}},
            {"term": {"attrs_keys": "up"}},
        ]
        per_bucket = {
            "up": {"filter": {"term": {"attrs_kv": attr_kv("up", True)}}},
            "lat": {"avg": {"field": num_field("latency_ms")}},
        }
        hist = {"histogram": {"field": "ts", "interval": interval_us, "min_doc_count": 1}, "aggs": per_bucket}
        body = {
            "query": q,
            "size": 0,
            "track_total_hits": False,
            "aggs": {"n": {"terms": {"field": "name", "size": len(names)}, "aggs": {"h": hist}}},
        }
        resp = self._search(body, "check series")
        out: dict[str, list[CheckBucket]] = {}
        for b in resp["aggregations"]["n"]["buckets"]:
            out[b["key"]] = [
                CheckBucket(
                    int(h["key"]),
                    int(h["doc_count"]),
                    int(h["up"]["doc_count"]),
                    None if h["lat"]["value"] is None else round(float(h["lat"]["value"]), 1),
                )
                for h in b["h"]["buckets"]
            ]
        return out

    def event_series(
        self, project_id: int, name: str | None, interval_us: int, start: int, end: int, unique: bool
    ) -> list[tuple[int, int]]:
        hist: dict[str, Any] = {"histogram": {"field": "ts", "interval": interval_us, "min_doc_count": 1}}
        if unique:
            # HyperLogLog: exact below 40,000 distinct users per bucket (precision_threshold max),
            # ~1% error above. SQLite counts exactly.
            hist["aggs"] = {"u": {"cardinality": {"field": "user_id", "precision_threshold": 40_000}}}
        body = {
            "query": self._events(project_id, name, start, end),
            "size": 0,
            "track_total_hits": False,
            "aggs": {"h": hist},
        }
        resp = self._search(body, "event series")
        out = []
        for b in resp["aggregations"]["h"]["buckets"]:
            n = int(b["u"]["value"]) if unique else int(b["doc_count"])
            if n:
                out.append((int(b["key"]), n))
        return out

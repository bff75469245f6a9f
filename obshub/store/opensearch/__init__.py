"""The `Store` protocol on an OpenSearch cluster (2.x, core modules only).

    url.py        opensearch:// URL -> OpenSearchConfig (ConfigError naming OBSHUB_STORE)
    client.py     opensearch-py client; its exceptions -> obshub.errors (guard)
    mappings.py   index names, the events template, event <-> document
    dsl.py        query-language AST -> query DSL
    writer.py     bulk `create` with per-item outcomes and bounded retries
    dedup.py      exactly-once across rollovers (ids stored in older backing indices)
    reader.py     search_after paging, counts, facets, analytics aggregations
    aggregate.py  `aggregate`: terms, histogram, cardinality, stats, percentiles (docs/aggregate.md)
    state.py      projects and tokens (small index, optimistic concurrency)
    sessions.py   the web sessions' shared signing key and the sessions ended by logout
    groups.py     error group records (same index) and their aggregations
    rollups.py    values of defined metrics per hour and day (their own index and retention)
    lifecycle.py  rollover and retention with core APIs (no ISM, no _delete_by_query)

Read-your-writes: by default a bulk does not wait for a refresh; the next read from this
process refreshes the stream first if anything was written since (~1-5 ms), so a hub sees what
it just acknowledged without paying up to 1 s per bulk. `?refresh=wait_for` makes every write
visible to every replica before it is acknowledged instead (docs/opensearch.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from opensearchpy import OpenSearch

from obshub.errors import StoreError, StoreOverloaded, StoreUnavailable
from obshub.store.base import (
    FACET_SAMPLE,
    AggBucket,
    Aggregate,
    AggregateRequest,
    CheckBucket,
    EventUnit,
    GroupRecord,
    GroupSeen,
    NewToken,
    Project,
    Record,
    RollupRow,
    Sampled,
    SearchRequest,
    TokenRecord,
    TokenScope,
    WriteResult,
)
from obshub.store.coalesce import Coalescer
from obshub.store.opensearch.aggregate import Aggregator
from obshub.store.opensearch.client import build_client, guard
from obshub.store.opensearch.groups import GROUP_FIELDS, Groups
from obshub.store.opensearch.lifecycle import Lifecycle
from obshub.store.opensearch.mappings import Names, doc_id, event_template, small_index_body
from obshub.store.opensearch.reader import Reader
from obshub.store.opensearch.records import RECORD_FIELDS, Records
from obshub.store.opensearch.rollups import Rollups
from obshub.store.opensearch.sessions import SESSION_FIELDS, Sessions
from obshub.store.opensearch.state import STATE_FIELDS, State
from obshub.store.opensearch.url import OpenSearchConfig, parse_url
from obshub.store.opensearch.writer import BULK_EVENTS, BulkWriter
from obshub.store.querylang import Node

__all__ = ["OpenSearchConfig", "OpenSearchStore", "parse_url"]

# Flushes in flight: one bulk can be on the wire while the next callers gather. More writers
# split single Sentry events over more, smaller bulks (4 measured no better for agent batches
# and worse for Sentry traffic at 32 connections).
_WRITERS = 2
_Batch = tuple[int, Sequence[dict[str, Any]], Sequence[GroupSeen]]  # (project_id, events, error groups seen)


def _may_be_one_batch(exc: Exception) -> bool:
    """A failed shared flush is retried batch by batch unless the cluster is unreachable or
    pushing back: every batch alone would wait out the same retries (writer.py)."""
    return not isinstance(exc, (StoreUnavailable, StoreOverloaded))


class OpenSearchStore:
    """The `Store` protocol on OpenSearch. Build with `from_url`, then `open()`."""

    def __init__(self, cfg: OpenSearchConfig) -> None:
        self.cfg = cfg
        self.url = cfg.redacted()
        self.names = Names(cfg.prefix)
        self._client: OpenSearch | None = None
        # Read-your-writes (refresh=read): writes bump `_written` once their bulk has landed; a
        # read refreshes first unless a refresh that *started after* the last bump has finished.
        self._written = 0
        self._refreshed = 0
        self._gen_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._committer: Coalescer[_Batch, WriteResult] | None = None

    @classmethod
    def from_url(cls, url: str) -> OpenSearchStore:
        return cls(parse_url(url))

    # -- lifecycle of the connection ------------------------------------------------------------
    @property
    def client(self) -> OpenSearch:
        if self._client is None:
            raise StoreUnavailable("OpenSearch store is not open")
        return self._client

    def open(self) -> None:
        if self._client is None:
            self._client = build_client(self.cfg)
        c = self._client
        n = self.names
        template = event_template(n, self.cfg.shards, self.cfg.replicas)
        state_props = {**STATE_FIELDS, **GROUP_FIELDS, **SESSION_FIELDS, **RECORD_FIELDS}
        try:
            with guard("create templates"):
                c.indices.put_index_template(name=n.events_template, body=template)
        except StoreError as e:
            if any(f"Unknown {kind} type" in str(e) for kind in ("char_filter", "tokenizer", "filter")):
                raise StoreError(
                    f"{e}. The `message` analyzer needs the analysis-common module, which every "
                    "OpenSearch distribution but the integ-test zip ships (docs/opensearch.md)"
                ) from None
            raise
        with guard("create templates"):
            if not c.indices.exists(index=n.state):
                try:
                    with guard("create index"):
                        c.indices.create(index=n.state, body=small_index_body(state_props, self.cfg.replicas))
                except StoreError as e:
                    if "resource_already_exists" not in str(e):  # another hub won the race
                        raise
            else:  # a store made by an older hub: new fields are additive mapping updates
                c.indices.put_mapping(index=n.state, body={"properties": state_props})
            exists = c.transport.perform_request("GET", f"/_data_stream/{n.events}", params={"ignore": 404})
            if not (isinstance(exists, dict) and exists.get("data_streams")):
                try:
                    with guard("create data stream"):
                        c.transport.perform_request("PUT", f"/_data_stream/{n.events}")
                except StoreError as e:
                    if "already exists" not in str(e):
                        raise
            else:  # the template only shapes new backing indices; extend the current ones too
                # (not `message`: an index keeps the analyzer it was made with, see mappings.py)
                props = {k: v for k, v in template["template"]["mappings"]["properties"].items() if k != "message"}
                c.indices.put_mapping(index=n.events, body={"properties": props})
            # (`timeout` in params would be taken as the client's socket timeout: put it in the path)
            c.transport.perform_request("GET", f"/_cluster/health/{n.events}?wait_for_status=yellow&timeout=30s")
        self._writer = BulkWriter(c, n.events, self.cfg.refresh)
        self._reader = Reader(c, n.events, self._before_read)
        self._aggregator = Aggregator(c, n.events, self._before_read)
        self._state = State(c, n)
        self._sessions = Sessions(c, n)
        self._records = Records(c, n)
        self._rollups = Rollups(c, n.rollups, self.cfg.replicas)
        self._state.narrow_dsn_keys()  # a store made before the `sentry` scope (state.py)
        self._groups = Groups(c, n.state, n.events, self._before_read)
        self.lifecycle = Lifecycle(c, n.events, on_rollover=self._writer.dedup.invalidate)
        if self._committer is None:
            # A flush takes waiting batches up to about one bulk's worth: single Sentry events
            # still share a bulk, and two agents' batches go out as two bulks indexed in parallel.
            self._committer = Coalescer(
                "obshub-opensearch-writer",
                self._flush,
                lambda b: len(b[1]),
                BULK_EVENTS,
                workers=_WRITERS,
                isolate=_may_be_one_batch,
            )

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        if getattr(self, "_writer", None) is not None:
            self._writer.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    def exists(self) -> bool:
        """The state index (projects, tokens) is what an `open` made first and what matters."""
        if self._client is None:
            self._client = build_client(self.cfg)
        with guard("look for the store"):
            return bool(self._client.indices.exists(index=self.names.state))

    def ping(self) -> None:
        try:
            with guard("ping"):
                h = self.client.transport.perform_request("GET", f"/_cluster/health/{self.names.events}?timeout=2s")
        except StoreUnavailable:
            raise
        except StoreError as e:  # e.g. the stream was deleted under us: not ready, whatever the cause
            raise StoreUnavailable(str(e)) from None
        if h.get("status") == "red" or h.get("timed_out"):
            raise StoreUnavailable(f"OpenSearch cluster health is {h.get('status')} for {self.names.events}")

    def _before_read(self) -> None:
        if self.cfg.refresh != "read" or self._refreshed >= self._written:
            return
        with self._refresh_lock:  # a reader arriving mid-refresh waits for it, then re-checks
            target = self._written
            if self._refreshed >= target:
                return
            with guard("refresh"):
                self.client.indices.refresh(index=self.names.events)
            self._refreshed = target  # writes landing during the refresh bumped past it

    def _wrote(self) -> None:
        with self._gen_lock:
            self._written += 1

    # -- projects and tokens --------------------------------------------------------------------
    def is_empty(self) -> bool:
        return self._state.is_empty()

    def create_project(self, name: str, public_key: str, token_hashes: Sequence[NewToken]) -> Project:
        return self._state.create_project(name, public_key, token_hashes)

    def add_token(self, project_id: int, scope: TokenScope, token_hash: str, label: str = "") -> None:
        self._state.add_token(project_id, scope, token_hash, label)

    def get_project(self, name: str) -> Project | None:
        return self._state.get_project(name)

    def get_project_by_id(self, project_id: int) -> Project | None:
        return self._state.get_project_by_id(project_id)

    def list_projects(self) -> list[Project]:
        return self._state.list_projects()

    def find_token(self, token_hash: str) -> tuple[Project, TokenScope] | None:
        return self._state.find_token(token_hash)

    def list_tokens(self, project_id: int | None = None) -> list[TokenRecord]:
        return self._state.list_tokens(project_id)

    def revoke_token(self, token_hash: str) -> TokenRecord | None:
        return self._state.revoke_token(token_hash)

    # -- web sessions ---------------------------------------------------------------------------
    def shared_secret(self, name: str, candidate: str) -> str:
        return self._sessions.shared_secret(name, candidate)

    def end_session(self, session_id: str, expires_at: int) -> None:
        self._sessions.end_session(session_id, expires_at)

    def session_ended(self, session_id: str) -> bool:
        return self._sessions.session_ended(session_id)

    # -- records ----------------------------------------------------------------------------------
    def get_record(self, kind: str, key: str) -> Record | None:
        return self._records.get(kind, key)

    def list_records(self, kind: str, prefix: str = "") -> list[Record]:
        return self._records.list(kind, prefix)

    def put_record(self, kind: str, key: str, value: dict[str, Any], version: int | None = None) -> Record:
        return self._records.put(kind, key, value, version)

    def delete_record(self, kind: str, key: str, version: int | None = None) -> bool:
        return self._records.delete(kind, key, version)

    # -- events ---------------------------------------------------------------------------------
    def write_events(
        self, project_id: int, events: Sequence[dict[str, Any]], groups: Sequence[GroupSeen] = ()
    ) -> WriteResult:
        return self.submit_events(project_id, events, groups).result()

    def submit_events(
        self, project_id: int, events: Sequence[dict[str, Any]], groups: Sequence[GroupSeen] = ()
    ) -> Future[WriteResult]:
        if self._committer is None:
            raise StoreUnavailable("OpenSearch store is not open")
        return self._committer.submit((project_id, events, groups))

    def _flush(self, batches: list[_Batch]) -> list[WriteResult]:
        """Every waiting caller's batch in one bulk, then one group lookup (see coalesce.py)."""
        fresh: set[int] = set()
        try:
            results = self._writer.write_many([(pid, events) for pid, events, _ in batches], fresh)
        finally:
            self._wrote()  # also after a failure: part of the bulk may have landed
        # Groups after their occurrences and before any caller is answered (a failure here
        # fails the flush: the client's retry finds its events stored and `adopt` creates the
        # groups they carry). Only occurrences stored now create or reopen a group.
        new: dict[int, dict[str, Any]] = {}
        old: dict[int, dict[str, Any]] = {}
        old_ids: dict[int, list[str]] = {}
        pos = 0
        for pid, events, groups in batches:
            seen = {g.id: g for g in groups}
            for i, ev in enumerate(events, pos):
                g = seen.get(ev.get("group_id") or "")
                if g is None:
                    continue
                if i in fresh:
                    cur = new.setdefault(pid, {}).get(g.id)
                    if cur is None or ev["ts"] < cur.first_seen:  # the earliest occurrence stored now
                        new[pid][g.id] = replace(g, first_seen=ev["ts"])
                else:
                    old.setdefault(pid, {})[g.id] = g
                    old_ids.setdefault(pid, []).append(doc_id(pid, ev["id"]))
            pos += len(events)
        for pid, gs in new.items():
            self._groups.reopen(pid, self._groups.touch(pid, list(gs.values())))
        for pid, gs in old.items():
            self._groups.adopt(pid, [g for gid, g in gs.items() if gid not in new.get(pid, {})], old_ids[pid])
        return results

    def search(self, project_id: int, req: SearchRequest) -> list[dict[str, Any]]:
        return self._reader.search(project_id, req)

    def count(self, project_id: int, query: Node | None, start: int | None, end: int | None) -> int:
        return self._reader.count(project_id, query, start, end)

    def aggregates(self, project_id: int, start: int, end: int, specs: Sequence[Aggregate]) -> list[float | None]:
        return self._reader.aggregates(project_id, start, end, specs)

    def user_events(
        self,
        project_id: int,
        user_id: str,
        start: int | None,
        end: int | None,
        limit: int,
        before: tuple[int, str] | None = None,
    ) -> list[dict[str, Any]]:
        return self._reader.user_events(project_id, user_id, start, end, limit, before)

    def request_events(
        self, project_id: int, request_ids: Sequence[str], limit: int
    ) -> dict[str, list[dict[str, Any]]]:
        return self._reader.request_events(project_id, request_ids, limit)

    def count_user_requests(self, project_id: int, user_id: str, start: int | None, end: int | None, cap: int) -> int:
        return self._reader.count_user_requests(project_id, user_id, start, end, cap)

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
        return self._reader.facets(project_id, query, start, end, fields, limit, sample)

    def event_names(self, project_id: int, start: int | None, end: int | None, limit: int) -> list[tuple[str, int]]:
        return self._reader.event_names(project_id, start, end, limit)

    def event_properties(
        self, project_id: int, name: str, start: int | None, end: int | None, sample: int = FACET_SAMPLE
    ) -> Sampled[list[str]]:
        return self._reader.event_properties(project_id, name, start, end, sample)

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
        return self._reader.property_values(project_id, name, prop, start, end, limit, sample)

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
        return self._reader.event_rows(project_id, steps, start, end, prop, unit, ids)

    def event_series(
        self, project_id: int, name: str | None, interval_us: int, start: int, end: int, unique: bool
    ) -> list[tuple[int, int]]:
        return self._reader.event_series(project_id, name, interval_us, start, end, unique)

    def check_series(
        self, project_id: int, names: Sequence[str], start: int, end: int, interval_us: int
    ) -> dict[str, list[CheckBucket]]:
        return self._reader.check_series(project_id, names, start, end, interval_us)

    def aggregate(self, project_id: int, req: AggregateRequest) -> AggBucket:
        return self._aggregator.aggregate(project_id, req)

    # -- error groups ---------------------------------------------------------------------------
    def get_groups(self, project_id: int, ids: Sequence[str] | None = None) -> list[Any]:
        return self._groups.get(project_id, ids)

    def group_stats(
        self, project_id: int, query: Node | None, start: int | None, end: int | None, ids: Sequence[str] | None = None
    ) -> dict[str, Any]:
        return self._groups.stats(project_id, query, start, end, ids)

    def group_series(self, project_id: int, start: int, end: int, interval_us: int) -> dict[str, list[tuple[int, int]]]:
        return self._groups.series(project_id, start, end, interval_us)

    def update_group(
        self,
        project_id: int,
        group_id: str,
        state: str | None = None,
        resolved_at: int | None = None,
        merged_into: str | None = None,
    ) -> GroupRecord:
        return self._groups.update(project_id, group_id, state, resolved_at, merged_into)

    # -- rollups --------------------------------------------------------------------------------
    def put_rollups(
        self, project_id: int, metric: str, interval: str, start: int, end: int, rows: Sequence[RollupRow]
    ) -> None:
        self._rollups.put(project_id, metric, interval, start, end, rows)

    def rollup_series(
        self, project_id: int, metric: str, interval: str, start: int, end: int, group: str | None = None
    ) -> list[RollupRow]:
        return self._rollups.series(project_id, metric, interval, start, end, group)

    def delete_rollups(self, before: int, project_id: int | None = None, metric: str | None = None) -> int:
        return self._rollups.delete(before, project_id, metric)

    # -- lifecycle ------------------------------------------------------------------------------
    def delete_before(self, cutoff: int) -> int:
        return self.lifecycle.delete_before(cutoff)

    def maintain(self, now_us: int, retention_us: int) -> dict[str, Any]:
        """The scheduled lifecycle job: rollover by age (1 d) or size (25 GB), then retention
        (`retention_us <= 0`: keep everything). Returns {"rolled_over", "deleted", "indices"}."""
        return self.lifecycle.maintain(now_us, retention_us)

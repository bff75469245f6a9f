"""Bulk writes of events: NDJSON bytes, `create` ops, per-item outcomes, bounded retries.

Per item (OpenSearch answers each line of a bulk separately):
    201          stored
    409          already there (same project + id): a duplicate, which is success (ids stored
                 before the last rollover are found first by dedup.py)
    429, 5xx     retried, alone, with capped exponential backoff; still failing after
                 _ATTEMPTS tries -> the whole call raises StoreOverloaded / StoreUnavailable so the
                 client retries the batch (the ids make that harmless), never a 2xx for data that
                 is not stored. A write block (429 cluster_block_exception: disk past the
                 flood-stage watermark) raises StoreOverloaded at once, with a longer Retry-After
    400 & co     the document itself is refused (e.g. a value too long for a keyword): rejected
                 with the cluster's reason, reported to the client, never dropped silently. One
                 exception: when the refusal is about `attrs_num` (numeric index of attrs; e.g.
                 the per-index field budget is spent) the event is stored again without it:
                 all its data is kept, only numeric range queries on those attrs miss it.

The ack: OpenSearch answers a bulk after fsyncing its translog (index.translog.durability =
request, set explicitly in the template), so returning from here means durable on the primary.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from opensearchpy import OpenSearch

from obshub.errors import StoreOverloaded, StoreUnavailable
from obshub.store.base import WriteResult
from obshub.store.opensearch.client import guard, reason
from obshub.store.opensearch.dedup import RolloverDedup
from obshub.store.opensearch.mappings import doc_id, to_doc

__all__ = ["BULK_EVENTS", "BulkWriter", "bulk_line"]

_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # per bulk request; 100 MiB is the server's hard limit
_ATTEMPTS = 5  # for items answered 429/5xx: waits 0.1+0.2+0.4+0.8 s = 1.5 s in total
_BACKOFF_S = 0.1
_BACKOFF_CAP_S = 2.0
# A cluster past its flood-stage disk watermark blocks writes (429 cluster_block_exception) until
# disk is freed: minutes or hours, not the moments a full queue takes. Retrying inside the hub
# only re-sends every batch 5 times; the client is told to come back in this many seconds.
_BLOCKED_RETRY_AFTER_S = 30
_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"
# The size of one bulk, in events. Each bulk costs the node a fixed ~1 ms of CPU on top of its
# documents, and a bulk into one shard is indexed by one write thread. So: flushes stop taking
# batches at about this size (the store's Coalescer) and one agent batch is one bulk; only a flush
# of at least twice this goes out as up to _PARALLEL concurrent sub-bulks of at least this size.
# Measured (bench/ingest_opensearch.py shape, 6 alternating rounds; docs/performance.md): the
# hub's CPU per event ~16.8 -> ~13.6 µs against 250-event sub-bulks, the node's no higher.
BULK_EVENTS = 1000
_PARALLEL = 4


class BulkWriter:
    def __init__(self, client: OpenSearch, index: str, refresh: str) -> None:
        self.client = client
        self.index = index
        self.refresh = refresh
        self.dedup = RolloverDedup(client, index)
        self._action = b'{"create":{"_index":' + orjson.dumps(index) + b',"_id":'
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _dispatch(
        self, chunks: Iterator[list[int]], lines: list[bytes], parallel: bool
    ) -> list[tuple[list[int], list[tuple[int, str]] | None]]:
        """Send each chunk as it is produced (so serializing the next overlaps sending this
        one); answers in chunk order. A failure raises for the whole batch; sibling sub-bulks
        may still land, which the client's retry then counts as duplicates."""
        if not parallel:
            return [(c, self._send(b"".join(map(lines.__getitem__, c)))) for c in chunks]
        with self._lock:
            if self._pool is None:  # shared by concurrent requests: 2 in flight each at full split
                self._pool = ThreadPoolExecutor(2 * _PARALLEL, thread_name_prefix="obshub-bulk")
            pool = self._pool
        sent = [(c, pool.submit(self._send, b"".join(map(lines.__getitem__, c)))) for c in chunks]
        return [(c, f.result()) for c, f in sent]

    def write_many(
        self, batches: Sequence[tuple[int, Sequence[dict[str, Any]]]], fresh: set[int] | None = None
    ) -> list[WriteResult]:
        """Several callers' batches (project id, events) in shared bulk requests; one result
        per batch, with `rejected` positions local to that batch. `fresh` (when given) gets the
        positions, over all batches in order, of the events this call stored (not duplicates):
        the error groups to record are theirs."""
        # Per-event lists built by C-level list operations (no Python step per event).
        pids: list[int] = []
        events: list[dict[str, Any]] = []
        owner: list[int] = []  # the batch of each event
        starts: list[int] = []  # position of each batch's first event in `events`
        stored_before: set[int] = set()
        for k, (pid, evs) in enumerate(batches):
            offset = len(events)
            starts.append(offset)
            stored_before.update(offset + i for i in self.dedup.already_stored(pid, evs))
            pids += [pid] * len(evs)
            owner += [k] * len(evs)
            events += evs
        results = [WriteResult() for _ in batches]
        dumps = orjson.dumps
        head = self._action
        lines: list[bytes] = [b""] * len(events)  # action + doc per event, aligned with `events`

        def serialized(indices: list[int]) -> Iterator[list[int]]:
            # Serialize a sub-bulk's worth of events, hand it out, then do the next one. Each
            # event is serialized before it joins a bulk shared with other requests: one that
            # cannot be is refused alone (normalize bounds events; this is the last defence).
            n = len(indices)
            per = n if n < 2 * BULK_EVENTS else max(BULK_EVENTS, -(-n // _PARALLEL))
            for k in range(0, len(indices), per):
                part = []
                for i in indices[k : k + per]:
                    if not lines[i]:
                        try:
                            lines[i] = bulk_line(head, pids[i], events[i])
                        except (TypeError, ValueError, OverflowError) as e:  # orjson's error is a TypeError
                            results[owner[i]].rejected.append((i - starts[owner[i]], f"cannot be stored: {e}"))
                            continue
                    part.append(i)
                if part:
                    yield from _by_bytes(part, lines)

        for i in stored_before:
            results[owner[i]].duplicates += 1
        pending = (
            [i for i in range(len(events)) if i not in stored_before] if stored_before else list(range(len(events)))
        )
        attempt = 0
        last_error = ""
        overloaded = blocked = False
        stripped: set[int] = set()
        while pending:
            attempt += 1
            retry: list[int] = []
            for chunk, statuses in self._dispatch(serialized(pending), lines, len(pending) >= 2 * BULK_EVENTS):
                if statuses is None:  # every item created: counted per batch, not per event
                    if len(results) == 1:
                        results[0].accepted += len(chunk)
                    else:
                        for k, n in Counter(map(owner.__getitem__, chunk)).items():
                            results[k].accepted += n
                    if fresh is not None:
                        fresh.update(chunk)
                    continue
                for i, (status, err) in zip(chunk, statuses, strict=True):
                    result = results[owner[i]]
                    if status in (200, 201):
                        result.accepted += 1
                        if fresh is not None:
                            fresh.add(i)
                    elif status == 409:
                        result.duplicates += 1
                    elif status == 429 or status >= 500:
                        retry.append(i)
                        overloaded = status == 429
                        blocked = blocked or err.startswith("cluster_block_exception")
                        last_error = f"{status} {err}"
                    elif i not in stripped and ("attrs_num" in err or "total fields" in err):
                        stripped.add(i)
                        # Store it without the numeric attrs index rather than lose it.
                        lines[i] = (
                            lines[i].split(b"\n", 1)[0]
                            + b"\n"
                            + dumps(to_doc(pids[i], events[i], with_num=False))
                            + b"\n"
                        )
                        retry.append(i)
                    else:
                        result.rejected.append((i - starts[owner[i]], f"rejected by OpenSearch ({status}): {err}"))
            pending = retry
            if pending and blocked:
                raise StoreOverloaded(
                    f"OpenSearch refuses writes ({len(pending)} of {len(events)} events not stored): {last_error}",
                    retry_after=_BLOCKED_RETRY_AFTER_S,
                )
            if pending and attempt >= _ATTEMPTS:
                cls = StoreOverloaded if overloaded else StoreUnavailable
                raise cls(
                    f"OpenSearch did not store {len(pending)} of {len(events)} events after "
                    f"{attempt} attempts; last: {last_error}"
                )
            if pending:
                time.sleep(min(_BACKOFF_CAP_S, _BACKOFF_S * 2 ** (attempt - 1)))
        for result in results:
            result.rejected.sort()
        return results

    def _send(self, body: bytes) -> list[tuple[int, str]] | None:
        """(status, error reason) of each item, or None when every item was created."""
        params = {"filter_path": _FILTER}
        if self.refresh == "wait_for":
            params["refresh"] = "wait_for"
        with guard("bulk write"):
            resp = self.client.transport.perform_request(
                "POST", "/_bulk", params=params, body=body, headers={"content-type": "application/x-ndjson"}
            )
        items = resp.get("items") or []
        n_lines = body.count(b"\n") // 2
        if len(items) != n_lines:
            raise StoreUnavailable(f"OpenSearch answered {len(items)} bulk items for {n_lines} events")
        if resp.get("errors") is False:  # every item created (a 409 or any failure sets it)
            return None
        out = []
        for item in items:
            (res,) = item.values()
            err = res.get("error")
            out.append((int(res.get("status", 0)), reason(err) if err else ""))
        return out


def bulk_line(head: bytes, project_id: int, ev: dict[str, Any]) -> bytes:
    """One event's `create` action and document, as the bulk body carries them (`head` is the
    action up to its `_id`: `{"create":{"_index":...,"_id":`). Raises orjson's TypeError for an
    event that cannot be serialized."""
    dumps = orjson.dumps
    return b"".join((head, dumps(doc_id(project_id, ev["id"])), b"}}\n", dumps(to_doc(project_id, ev)), b"\n"))


def _by_bytes(indices: list[int], lines: list[bytes]) -> list[list[int]]:
    """Split so no request exceeds _MAX_REQUEST_BYTES."""
    if sum(map(len, map(lines.__getitem__, indices))) <= _MAX_REQUEST_BYTES:
        return [indices]  # the common case (1,000 events of ~600 bytes), summed in C
    chunks: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i in indices:
        n = len(lines[i])
        if cur and size + n > _MAX_REQUEST_BYTES:
            chunks.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += n
    if cur:
        chunks.append(cur)
    return chunks

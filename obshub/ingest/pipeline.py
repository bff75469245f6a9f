"""The one path every stored event takes: normalize -> digest -> write.

Native NDJSON and Sentry ingest, the demo loader (`serve --demo`), uptime results and check
definitions all store through here, so every stored event is scrubbed, every error occurrence
parsed and grouped by the same code, and every group recorded by the same store call as its
occurrences. A path that wrote around it stored errors without groups (`serve --demo` once
showed an empty Errors page).

    normalize   `obshub.events.normalize`, per event. The protocol parsers call it themselves,
                to report each bad line or item with its reason; `prepare` does it for the
                hub's own producers, whose events are never invalid.
    digest      `digested`: scrub, parse traceback text, fingerprint -> a `Batch` (events + the
                groups they belong to). Pure CPU: the HTTP handlers run it inline for a small
                body and on an ingest thread for a big one (`admission.prepared`).
    write       `write`: through `Hub.write`, awaited on the event loop (one store call per
                batch, shared with other callers' batches: group commit, store/coalesce.py).
                `write_blocking`: the same store call from a thread off the event loop (probe
                threads, check definitions written from a worker thread).

The store records a batch's groups only for occurrences actually stored (Store.write_events),
so a replayed batch of duplicates creates and reopens nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from obshub.digest import GroupSeen, Scrubber, digest
from obshub.events import DEFAULT_LIMITS, Limits, normalize
from obshub.store.base import Store, WriteResult

if TYPE_CHECKING:
    from obshub.hub import Hub

__all__ = ["Batch", "digested", "prepare", "store_events", "write", "write_blocking"]

Event = dict[str, Any]


@dataclass
class Batch:
    """Normalized, digested events ready to store, with the error groups they belong to."""

    events: list[Event] = field(default_factory=list)
    groups: dict[str, GroupSeen] = field(default_factory=dict)


def digested(events: list[Event], scrubber: Scrubber) -> Batch:
    """Digest normalized events in place (scrub, parse tracebacks, group)."""
    return Batch(events, digest(events, scrubber))


def prepare(raw: Iterable[Mapping[str, Any]], received_at: int, scrubber: Scrubber,
            limits: Limits = DEFAULT_LIMITS) -> Batch:
    """Normalize and digest events the hub makes itself (demo data, uptime results, check
    definitions). They are valid by construction: an EventError here is a bug, and raises."""
    return digested([normalize(dict(r), received_at, limits) for r in raw], scrubber)


async def write(hub: Hub, project_id: int, batch: Batch) -> WriteResult:
    """Store a batch through `Hub.write` (durable when this returns)."""
    if not batch.events:
        return WriteResult()
    return await hub.write(project_id, batch.events, batch.groups)


def write_blocking(store: Store, project_id: int, batch: Batch) -> WriteResult:
    """`write` for a thread off the event loop: the same store call, waited for here."""
    if not batch.events:
        return WriteResult()
    return store.write_events(project_id, batch.events, list(batch.groups.values()))


def store_events(store: Store, project_id: int, raw: Iterable[Mapping[str, Any]], received_at: int,
                 scrubber: Scrubber | None = None) -> WriteResult:
    """`prepare` + `write_blocking`: how the hub's own producers store what they make."""
    return write_blocking(store, project_id, prepare(raw, received_at, scrubber or Scrubber()))

"""A query's new lines as they arrive (the web UI's live tail), poll after poll.

Each poll reads the matches of the last `LOOKBACK_US` (late lines from a spooling agent, up to
2 minutes old, still arrive) and returns those it has not returned before. The first poll of a
new tail shows the newest `BACKFILL` lines of the past hour, so it is never blank; a tail
resumed from a known time (`since`, the SSE Last-Event-ID) starts there instead.
"""

from __future__ import annotations

from typing import Any

from obshub.events import to_public
from obshub.store.base import SearchRequest, Store
from obshub.store.querylang import Node

__all__ = ["BACKFILL", "LOOKBACK_US", "Tail"]

LOOKBACK_US = 120_000_000  # late lines (agent spooling) up to 2 min old still reach the tail
BACKFILL = 20  # lines shown when a tail opens
BACKFILL_US = 3_600_000_000  # ...from the past hour
POLL_LIMIT = 500  # lines per poll: a burst beyond it shows its newest 500
SEEN_MAX = 5_000  # ids remembered before the ones older than the lookback are forgotten


class Tail:
    """One open tail of `query` in a project; `poll` from one thread at a time."""

    def __init__(self, store: Store, project_id: int, query: Node | None, since: int | None) -> None:
        self.store = store
        self.project_id = project_id
        self.query = query
        self.since = since
        self.first = True
        self.seen: dict[str, int] = {}  # id -> ts of the lines returned, so none comes twice

    def _read(self, start: int, limit: int) -> list[dict[str, Any]]:
        rows = self.store.search(self.project_id, SearchRequest(self.query, start, None, limit, None, False))
        return list(reversed(rows))

    def poll(self, now: int) -> tuple[list[dict[str, Any]], int | None]:
        """(the lines not returned before, oldest first, as the API shows them; the newest
        one's `ts` in µs, from which a reconnecting tail resumes). A store error raises and
        leaves the tail as it was, so the next poll retries the same read."""
        if self.first and self.since is None:
            rows = self._read(now - BACKFILL_US, BACKFILL)
        else:
            start = min(self.since, now - LOOKBACK_US) if self.first and self.since is not None else now - LOOKBACK_US
            rows = self._read(start, POLL_LIMIT)
        self.first = False
        fresh = [e for e in rows if e["id"] not in self.seen]
        for e in fresh:
            self.seen[e["id"]] = e["ts"]
        if len(self.seen) > SEEN_MAX:
            cutoff = now - LOOKBACK_US - 10_000_000
            self.seen = {k: v for k, v in self.seen.items() if v >= cutoff}
        return [to_public(e) for e in fresh], max((e["ts"] for e in fresh), default=None)

"""The `Store` protocol: everything the hub persists goes through these methods.

Two backends implement it (`sqlite/`, `opensearch/`), and `tests/contract/` runs one suite on
both, so the hub above this line never knows which one it talks to. Methods are synchronous:
the HTTP layer calls them in a worker thread, which keeps both backends simple (sqlite3 and
opensearch-py are blocking libraries) and lets a backend use its own connection pooling. The
one exception is the hot path, `submit_events`: it returns a future at once, and the event loop
awaits it while the store's writer thread commits it together with other callers' batches.

Times are integers, microseconds since the epoch (UTC), like `ts` in `obshub.events`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from obshub.store.querylang import Node

__all__ = [
    "AGGREGATE_MEASURES",
    "AGG_OPS",
    "CHECK_SERIES_MAX",
    "FACET_SAMPLE",
    "ROLLUP_INTERVALS",
    "AggBucket",
    "Aggregate",
    "AggregateRequest",
    "CheckBucket",
    "EventUnit",
    "GroupRecord",
    "GroupStats",
    "NewToken",
    "Project",
    "Record",
    "RollupRow",
    "Sampled",
    "SearchRequest",
    "Store",
    "TokenRecord",
    "TokenScope",
    "WriteResult",
    "hash_token",
]

# "ingest" (agents, SDKs: every ingest route), "sentry" (a DSN key: the Sentry routes only),
# "read" (queries, the web UI), "admin" (defining uptime checks): obshub/auth.py.
TokenScope = str
# A token to store: (scope, SHA-256 hex of the secret) or (scope, hash, label).
NewToken = tuple[TokenScope, str] | tuple[TokenScope, str, str]
Event = dict[str, Any]
# Whom a funnel or retention follows (Store.event_rows): a user or a session.
EventUnit = Literal["user_id", "session_id"]


def hash_token(token: str) -> str:
    """What a store keeps of a token: its SHA-256, hex (obshub/auth.py says why not a slow hash).
    Here, below auth, because a store brought up to date at open matches a project's DSN key to
    its token row by this hash (sqlite/schema.py, opensearch/state.py)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    public_key: str  # the Sentry DSN key: public by design, stored in clear
    created_at: int = 0


@dataclass(frozen=True)
class TokenRecord:
    """A stored token, without its secret (only its hash is ever stored)."""

    hash: str  # SHA-256 hex of the secret
    project_id: int
    scope: TokenScope
    label: str
    created_at: int
    revoked_at: int | None = None

    @property
    def id(self) -> str:
        """What `obshub token list` shows and `token revoke` takes: 48 bits of the hash, unique in
        practice (two clash with probability ~n²/2⁴⁹: 1e-9 at 1,000 tokens) and useless to an
        attacker (the hash of a 192-bit secret reveals nothing of it)."""
        return self.hash[:12]


@dataclass
class WriteResult:
    """Outcome of one batch. `rejected` holds (index in the batch, reason) for events the
    backend refused (e.g. an OpenSearch mapping error): reported to the client, never dropped
    silently. Everything counted in `accepted` or `duplicates` is durably stored."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class GroupSeen:
    """A group touched by a batch (made by obshub.digest): enough for the store to create it if
    new, or flip it on regression."""

    id: str
    title: str
    type: str | None
    culprit: str | None
    level: str
    version: str
    first_seen: int  # earliest ts in this batch


@dataclass(frozen=True)
class GroupRecord:
    """The mutable state of an error group (counts are not here: they are aggregations)."""

    id: str
    title: str
    type: str | None
    culprit: str | None
    level: str
    version: str  # grouping algorithm that made it (digest/grouping/vN.py)
    state: str  # unresolved | resolved | ignored
    first_seen: int
    resolved_at: int | None = None
    regressed_at: int | None = None  # last time a new occurrence reopened it after resolve
    merged_into: str | None = None


@dataclass(frozen=True)
class Record:
    """A small mutable document of the hub's own state, shared by every hub on the store: alert
    rules and their state, the jobs' lease (obshub/jobs/lease.py), later dashboards. `version`
    grows by one on each write, for optimistic concurrency: a writer that read version n
    replaces the record only if it is still n (`Store.put_record`), so two replicas never both
    win a lease or overwrite each other's alert state unseen."""

    kind: str  # what it is: "lease", "alert-rule", "alert-state", ...
    key: str  # unique within the kind (callers put the project id in it when it belongs to one)
    value: dict[str, Any]  # JSON: str keys, JSON values
    version: int  # 1 after the first write
    updated_at: int  # µs


MAX_RECORDS = 10_000  # `list_records` answers at most this many (OpenSearch's max_result_window)


@dataclass(frozen=True)
class GroupStats:
    count: int
    users: int
    hosts: list[str]
    first_seen: int
    last_seen: int


@dataclass(frozen=True)
class CheckBucket:
    """Uptime probe results of one check in one time bucket (`Store.check_series`)."""

    t: int  # bucket start, µs: a multiple of the interval since the epoch
    results: int  # probe results (kind=check events with attrs.up)
    up: int  # of which attrs.up is true
    latency_ms: float | None  # mean attrs.latency_ms of the results that have one


# Checks per `check_series` call: 200 checks x 90 daily buckets = 18,000 buckets, under
# OpenSearch's search.max_buckets (65,535) with room for the names level.
CHECK_SERIES_MAX = 200

GROUP_STATES = ("unresolved", "resolved", "ignored")

# Facets and analytics' properties and values count the newest 10,000 matches, not every
# match: four GROUP BYs over the 714k events of a busy day took ~575 ms each on SQLite at 5M
# events, the newest 10,000 take ~15 ms in all, whatever the range. 10,000 is also OpenSearch's
# deepest `from` (index.max_result_window), which finds the same cutoff there, so both stores
# count the same events.
FACET_SAMPLE = 10_000

T = TypeVar("T")


@dataclass(frozen=True)
class Sampled(Generic[T]):
    """An aggregation over the newest `counted` matches (by `ts`, then `id`, newest first).
    `approximate`: more matched than were counted, so `value` describes the newest `counted`
    only; otherwise it is exact."""

    value: T
    counted: int
    approximate: bool


AGGREGATE_MEASURES = ("count", "users", "avg", "max", "p95")


@dataclass(frozen=True)
class Aggregate:
    """One measure of the events matching `query` in a window; `Store.aggregates` computes many
    over one window at once (the alert rules, obshub/alerts/evaluate.py: 1,000 rules cost one
    read of the window, not 1,000). `measure`: count; users (distinct user_id); avg, max, p95 of
    the numeric values of attribute `attr` (strings and booleans are not numbers)."""

    query: Node | None
    measure: str = "count"  # one of AGGREGATE_MEASURES
    attr: str = ""  # the attribute key (without "attrs.") of avg, max, p95


@dataclass(frozen=True)
class SearchRequest:
    query: Node | None = None
    start: int | None = None  # inclusive, µs
    end: int | None = None  # exclusive, µs
    limit: int = 100
    after: tuple[int, str] | None = None  # (ts, id) of the last event of the previous page
    ascending: bool = False  # newest first by default; traces and timelines read oldest first


# -- aggregation (GET/POST /api/v1/aggregate; obshub/query/aggregate.py validates, docs/aggregate.md)
AGG_OPS = ("count", "unique", "sum", "avg", "min", "max", "p50", "p90", "p95", "p99")
AggKey = str | int | float  # a group's value: core fields are text, attributes keep their JSON type
AggValue = int | float | None  # count/unique: int; the others: float, None when no numeric value


@dataclass(frozen=True)
class AggregateRequest:
    """One aggregation, already validated (obshub/query/aggregate.py): the measure `op` over the
    events matching `query` in [start, end), split by up to two `group_by` fields (the `top`
    values per level by event count, ties by value) and into `interval` buckets (µs, at
    multiples of it since the epoch) when given."""

    query: Node | None
    start: int  # inclusive, µs
    end: int  # exclusive, µs
    op: str = "count"  # one of AGG_OPS
    field: str | None = None  # unique: a core field; sum..p99: "attrs.KEY" (numbers only)
    group_by: tuple[str, ...] = ()  # core fields or "attrs.KEY", at most two
    top: int = 10
    interval: int | None = None


@dataclass
class AggBucket:
    """The measure over a set of events: all of them (the result's root), one group, or the
    `other` events of a level (not in its top groups, or without the field). `series`: (bucket
    start µs, count, value) of the non-empty time buckets, oldest first."""

    count: int
    value: AggValue
    series: list[tuple[int, int, AggValue]] = field(default_factory=list)
    key: AggKey | None = None
    groups: list[AggBucket] = field(default_factory=list)  # the next level's top groups
    other: AggBucket | None = None  # set when there is a next level


# -- rollups: durable values of defined metrics (obshub/query/metrics.py, docs/metrics.md) ------
ROLLUP_INTERVALS = {"hour": 3_600_000_000, "day": 86_400_000_000}  # name -> bucket width, µs


@dataclass(frozen=True)
class RollupRow:
    """A defined metric's value over one hour or day (UTC, `t` its start, µs) for every matching
    event (`group` ""), one group of its `group_by` (its key as text) or the rest ("other").
    Computed from the events of that bucket alone, never from other rows."""

    metric: str
    group: str
    interval: str  # a key of ROLLUP_INTERVALS
    t: int
    count: int  # events in the bucket (and group)
    value: AggValue


class Store(Protocol):
    """Persistence of projects, tokens and events. Raise `StoreUnavailable` when the backend is
    unreachable (the hub answers 503 and agents spool), never return partial success silently."""

    url: str

    def exists(self) -> bool:
        """True when a store is already there (an `open` made it), checked without creating
        anything: the CLI's client commands refuse to make a new, empty store by accident."""

    def open(self) -> None:
        """Connect and create schema/templates if absent. Idempotent; called from the lifespan."""

    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the backend can serve reads and writes now."""

    # -- projects and tokens ----------------------------------------------------------------
    def is_empty(self) -> bool:
        """True when no project exists yet (first start: the hub bootstraps `default`)."""

    def create_project(self, name: str, public_key: str, token_hashes: Sequence[NewToken]) -> Project:
        """Create a project with its hashed tokens; raises Conflict if the name exists."""

    def add_token(self, project_id: int, scope: TokenScope, token_hash: str, label: str = "") -> None:
        """Store one more token; the same hash twice is a no-op."""

    def get_project(self, name: str) -> Project | None: ...

    def get_project_by_id(self, project_id: int) -> Project | None: ...

    def list_projects(self) -> list[Project]: ...

    def find_token(self, token_hash: str) -> tuple[Project, TokenScope] | None:
        """The project and scope of a token that exists and is not revoked; read from the store
        itself on every call (no cache here: `obshub.auth.TokenCache` bounds the staleness)."""

    def list_tokens(self, project_id: int | None = None) -> list[TokenRecord]:
        """Tokens of one project (of every project when None), revoked ones too, oldest first."""

    def revoke_token(self, token_hash: str) -> TokenRecord | None:
        """Mark a token revoked (find_token stops finding it) and return it; None if unknown.
        Revoking twice keeps the first `revoked_at`."""

    # -- web sessions (obshub/web/session.py) -------------------------------------------------
    def shared_secret(self, name: str, candidate: str) -> str:
        """The secret `name` every hub on this store shares: the stored one, or `candidate`,
        stored if absent (create-if-absent: replicas starting at once all get the first one)."""

    def end_session(self, session_id: str, expires_at: int) -> None:
        """Record a web session as ended (logout) until `expires_at` (µs), when its cookie expires
        anyway; entries past their `expires_at` may be forgotten."""

    def session_ended(self, session_id: str) -> bool:
        """Whether `end_session` recorded this session (read from the store on every call:
        obshub/web/session.py caches the answer for `token_cache_s`)."""

    # -- records: small shared documents with optimistic concurrency (`Record`) ----------------
    def get_record(self, kind: str, key: str) -> Record | None:
        """The record as stored now (read-your-writes on every backend: OpenSearch's realtime GET)."""

    def list_records(self, kind: str, prefix: str = "") -> list[Record]:
        """The records of `kind` whose key starts with `prefix`, by key, at most MAX_RECORDS;
        every write acknowledged before the call is seen (OpenSearch: writes refresh)."""

    def put_record(self, kind: str, key: str, value: dict[str, Any], version: int | None = None) -> Record:
        """Write `value` and return the stored record (its new version). `version`: None writes
        whatever is there (last write wins); 0 creates only, raising Conflict if the record
        exists; n > 0 replaces only the record still at version n, raising Conflict otherwise
        (somebody wrote it since it was read, or it is gone)."""

    def delete_record(self, kind: str, key: str, version: int | None = None) -> bool:
        """Remove the record (only if still at `version`, when given: else Conflict); False if
        there was none."""

    # -- events ------------------------------------------------------------------------------
    def write_events(self, project_id: int, events: Sequence[Event], groups: Sequence[GroupSeen] = ()) -> WriteResult:
        """Store normalized events with "create if absent" on `id`; return only once durable.

        `groups` (`GroupSeen`, the groups the batch's events carry in `group_id`)
        are recorded for the occurrences actually stored, before this returns, so an
        acknowledged occurrence never points at a missing group:
        - a group is created (if absent) when this batch stored one of its occurrences, or when
          a duplicate's stored copy carries it (a retry after a write that stored the events
          but failed before their groups). A replayed batch whose events are stored already,
          under no group or another one, creates nothing; a group with no occurrence in the
          batch is not created;
        - a resolved group regresses (state unresolved, regressed_at) only by an occurrence this
          batch stored, and only when a stored occurrence was received after its resolution:
          judging on stored occurrences keeps an agent's replay of an old batch from reopening
          anything."""

    def submit_events(
        self, project_id: int, events: Sequence[Event], groups: Sequence[GroupSeen] = ()
    ) -> Future[WriteResult]:
        """`write_events` without blocking: the future resolves once the batch is durable. The
        hub's event loop awaits it directly (no worker thread per request); the store does the
        work on its own writer thread, together with other callers' batches."""

    def search(self, project_id: int, req: SearchRequest) -> list[Event]:
        """Events matching the request, ordered by (ts, id) in the requested direction."""

    def count(self, project_id: int, query: Node | None, start: int | None, end: int | None) -> int: ...

    def aggregates(self, project_id: int, start: int, end: int, specs: Sequence[Aggregate]) -> list[float | None]:
        """Each spec's value over the events of [start, end), in order, read in one pass over
        the window (SQLite: one scan per few hundred specs; OpenSearch: one search of `filter`
        aggregations). count and users: an int (0 when nothing matches; users is OpenSearch's
        cardinality, exact up to 40,000); avg, max, p95: a float, None when no matching event has
        a number there. p95 interpolates linearly between the closest ranks (OpenSearch: its
        TDigest estimate, exact for small sets). ValueError for an unknown measure."""

    # -- the user timeline (obshub.query.search.user_timeline): three reads whose cost is bounded
    # by what one page shows, never by the user's history or the store's size.
    def user_events(
        self,
        project_id: int,
        user_id: str,
        start: int | None,
        end: int | None,
        limit: int,
        before: tuple[int, str] | None = None,
    ) -> list[Event]:
        """The user's own events (`user_id` equal) in the range, newest first by (ts, id), those
        strictly older than `before`; read from the (project, user_id, ts) index whatever the
        range (a walk of the time index reads every event of the range: seconds at 5M events)."""

    def request_events(self, project_id: int, request_ids: Sequence[str], limit: int) -> dict[str, list[Event]]:
        """Each request's oldest `limit` events by (ts, id), on every host and at any time, one
        index lookup per id (a heavy request costs `limit`, not its size). Ids with no event are
        absent."""

    def count_user_requests(self, project_id: int, user_id: str, start: int | None, end: int | None, cap: int) -> int:
        """Distinct `request_id`s among the user's events in the range, counted up to `cap`:
        `cap + 1` means "more than cap" (the cost stays bounded for a user with millions)."""

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
        """Top `limit` values with counts for each core field (level, service, host, env...),
        highest count first (ties by value), over the newest `sample` matches (1..10,000):
        bounded cost at any data size. ValueError for a field that cannot be faceted."""

    # -- analytics (kind=event) --------------------------------------------------------------
    def event_names(self, project_id: int, start: int | None, end: int | None, limit: int) -> list[tuple[str, int]]: ...

    def event_properties(
        self, project_id: int, name: str, start: int | None, end: int | None, sample: int = FACET_SAMPLE
    ) -> Sampled[list[str]]:
        """Sorted attribute keys of the newest `sample` occurrences of the event."""

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
        """The property's top `limit` values (highest count first, ties by value) over the
        newest `sample` occurrences of the event."""

    def event_series(
        self, project_id: int, name: str | None, interval_us: int, start: int, end: int, unique: bool
    ) -> list[tuple[int, int]]:
        """(bucket start µs, count) for non-empty buckets; unique counts distinct user_id."""

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
        """(unit, ts, id, step, value) of the `kind=event` rows in [start, end) with a `unit`
        (user_id or session_id) that match each query of `steps` (a row matching two steps comes
        twice, one per step), ordered by unit (bytewise, which is Python's str order), ts, id, step; `value`: the
        JSON value of attribute `prop` on step 0's rows, else None. Streamed in pages: memory
        stays bounded whatever the count (obshub/query/funnels.py walks it user by user).
        `ids=False`: what retention needs, times only: the id is "", the value None, and rows of
        one step with the same unit and ts come once (OpenSearch then sorts without the id: half the node's CPU).
        """

    def check_series(
        self, project_id: int, names: Sequence[str], start: int, end: int, interval_us: int
    ) -> dict[str, list[CheckBucket]]:
        """Uptime results per check name of `names` (at most CHECK_SERIES_MAX): kind=check
        events with `attrs.up` in [start, end), in buckets at multiples of `interval_us` since
        the epoch; non-empty buckets only, oldest first; names without results are absent. The
        Checks page's 90-day bars and response time chart, aggregated in the store (one read
        for every check shown, not one per check and day)."""

    def aggregate(self, project_id: int, req: AggregateRequest) -> AggBucket:
        """The aggregation as a tree rooted at every matching event (docs/aggregate.md): counts,
        sums, minima and maxima exact on both stores; `unique` and percentiles exact on SQLite,
        within the documented tolerances on OpenSearch (HyperLogLog++, TDigest)."""

    # -- error groups --------------------------------------------------------------------------
    def get_groups(self, project_id: int, ids: Sequence[str] | None = None) -> list[GroupRecord]:
        """Group records (all of the project when `ids` is None)."""

    def group_stats(
        self, project_id: int, query: Node | None, start: int | None, end: int | None, ids: Sequence[str] | None = None
    ) -> dict[str, GroupStats]:
        """Aggregations over the error occurrences (kind=error with a group_id) matching."""

    def group_series(self, project_id: int, start: int, end: int, interval_us: int) -> dict[str, list[tuple[int, int]]]:
        """Per group: (bucket start µs, occurrences) for the non-empty buckets of [start, end),
        buckets at multiples of `interval_us` since the epoch (the errors list's sparklines)."""

    def update_group(
        self,
        project_id: int,
        group_id: str,
        state: str | None = None,
        resolved_at: int | None = None,
        merged_into: str | None = None,
    ) -> GroupRecord:
        """Change state (and resolved_at) or merge; raises NotFound for an unknown group."""

    # -- rollups (`RollupRow`): kept apart from events, with their own retention ----------------
    def put_rollups(
        self, project_id: int, metric: str, interval: str, start: int, end: int, rows: Sequence[RollupRow]
    ) -> None:
        """Replace the metric's rows of `interval` with `t` in [start, end) by `rows` (all of that
        metric and interval, in the range): idempotent, so a bucket recomputed after late events
        or a restart is stored once, and a group gone from a bucket's top leaves no stale row."""

    def rollup_series(
        self, project_id: int, metric: str, interval: str, start: int, end: int, group: str | None = None
    ) -> list[RollupRow]:
        """The metric's rows of `interval` with `t` in [start, end) (of one `group` when given),
        by group then `t`."""

    def delete_rollups(self, before: int, project_id: int | None = None, metric: str | None = None) -> int:
        """Remove rows with `t` < `before` (of one project, and one metric of it, when given);
        returns how many."""

    # -- lifecycle ---------------------------------------------------------------------------
    def delete_before(self, cutoff: int) -> int:
        """Retention: remove events with ts < cutoff; returns how many (or an estimate)."""

    def maintain(self, now_us: int, retention_us: int) -> dict[str, Any]:
        """The scheduled maintenance job (obshub/jobs/scheduler.py): retention of events older
        than `retention_us` (<= 0 keeps everything) plus the backend's own upkeep (OpenSearch:
        rollover; SQLite: space reclaim and planner statistics). Returns at least
        {"deleted": n}, with backend-specific details beside it."""

"""The one exception tree of the hub. HTTP statuses for these are mapped in `obshub/app.py` only
(the two store states carry theirs, with Retry-After, as class attributes its handlers use).

    ObshubError
     ├── ConfigError            bad setting or store URL; raised at start, names the key
     ├── StoreError
     │    ├── StoreUnavailable  backend unreachable or failing      -> 503 + Retry-After
     │    ├── StoreOverloaded   backend pushing back (queue full)   -> 429 + Retry-After
     │    ├── NotFound                                              -> 404
     │    └── Conflict          optimistic-concurrency loss, dup name -> 409
     └── QueryError             a query the user can fix            -> 400 (with column)

`obshub.events.EventError` and `obshub.store.querylang.QuerySyntaxError` are ValueErrors raised
by pure code; the HTTP layer reports the first per line and the second as 400 with its column.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Conflict",
    "NotFound",
    "ObshubError",
    "QueryError",
    "StoreError",
    "StoreOverloaded",
    "StoreUnavailable",
]


class ObshubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(ObshubError):
    """A setting is missing or invalid. The message names the key (e.g. OBSHUB_STORE)."""


class StoreError(ObshubError):
    pass


class StoreUnavailable(StoreError):
    """The store cannot take or serve data right now; clients should retry after a pause."""

    status = 503
    retry_after = 5  # seconds: long enough for a node restart to begin, short for agents


class StoreOverloaded(StoreError):
    """The store is up but pushing back (write queue full, a disk-full write block); back off."""

    status = 429
    retry_after = 2  # a full queue drains in moments; a write block says how long it wants

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class QueryError(ObshubError):
    """A query that parses but cannot run (unknown level, bad time); `column` when known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column

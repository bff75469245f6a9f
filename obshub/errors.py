"""The one exception tree of the hub. Each class carries the HTTP status it is answered with
(and Retry-After where a client should pause); `obshub/http_errors.py` turns any of them into
the JSON answer, the one mapping for every route (app.py's handlers, ingest, the Sentry routes).

    ObshubError
     ├── ConfigError            bad setting or store URL; raised at start, names the key
     ├── StoreError
     │    ├── StoreUnavailable  backend unreachable or failing      -> 503 + Retry-After
     │    ├── StoreOverloaded   backend pushing back (queue full)   -> 429 + Retry-After
     │    ├── NotFound                                              -> 404
     │    └── Conflict          optimistic-concurrency loss, dup name -> 409
     ├── QueryError             a query the user can fix            -> 400 (with column)
     ├── FieldError             one field of an event or a check definition (also a ValueError)
     ├── AuthError              no/unknown credentials -> 401, wrong scope or project -> 403
     ├── BodyError              an ingest body: too big 413, bad encoding 415, corrupt 400
     ├── ParseError             nothing in an ingest body is in the protocol's format -> 400
     └── Refused                no ingest slot within admission_wait_s -> 429 + Retry-After

`FieldError` is raised by pure code (`events.normalize`, `uptime.config.parse_check`); its
callers report it per line, per item, or as a QueryError or ConfigError naming where.
`obshub.store.querylang.QuerySyntaxError` (a ValueError of the query language, with a column)
becomes a QueryError in `query.search.parse_query`.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BodyError",
    "ConfigError",
    "Conflict",
    "FieldError",
    "NotFound",
    "ObshubError",
    "ParseError",
    "QueryError",
    "Refused",
    "StoreError",
    "StoreOverloaded",
    "StoreUnavailable",
]


class ObshubError(Exception):
    """Base of every error the hub raises on purpose."""

    status = 500  # the HTTP status it is answered with
    retry_after: int | None = None  # seconds a client should wait before trying again


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
    status = 404


class Conflict(StoreError):
    status = 409


class QueryError(ObshubError):
    """A query that parses but cannot run (unknown level, bad time); `column` when known."""

    status = 400

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


class FieldError(ObshubError, ValueError):
    """One field of the input is invalid (an event's, a check definition's); `field` names it
    so the client can fix it. The message is `<field>: <why>`."""

    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AuthError(ObshubError):
    """401 (no/unknown credentials) or 403 (valid token, wrong scope or project)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BodyError(ObshubError):
    """An ingest body the hub will not take: too big (413), an unsupported Content-Encoding
    (415), corrupt or empty (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ParseError(ObshubError):
    """Nothing in an ingest body is in the protocol's format (not NDJSON, not an envelope)."""

    status = 400


class Refused(ObshubError):
    """No ingest slot within `admission_wait_s` (obshub/ingest/admission.py)."""

    status = 429
    retry_after = 1

    def __init__(self, message: str = "too many concurrent ingest requests; retry later") -> None:
        super().__init__(message)

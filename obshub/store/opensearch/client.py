"""The opensearch-py client for a config, and the one place its exceptions become ours.

Every call into the cluster goes through `guard()`, so the hub only ever sees the obshub
exception tree: unreachable, timing out or 5xx -> StoreUnavailable (503 + Retry-After),
429 -> StoreOverloaded, 409 -> Conflict, 404 -> NotFound; anything else is a StoreError with the
cluster's reason (a bug or a misconfiguration, reported, never a raw traceback to a client).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from opensearchpy import JSONSerializer, OpenSearch
from opensearchpy import exceptions as ose

from obshub.errors import Conflict, NotFound, QueryError, StoreError, StoreOverloaded, StoreUnavailable
from obshub.store.opensearch.url import OpenSearchConfig

__all__ = ["build_client", "guard", "reason", "refused_query"]


class _Serializer(JSONSerializer):
    """Responses parsed with orjson: a 1,000-item bulk answer is ~2x cheaper to read than with
    the stdlib, on the hub's hottest path. Anything orjson refuses (NaN, say) takes the
    stdlib's path, so behaviour is unchanged."""

    def loads(self, s: str) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)


def build_client(cfg: OpenSearchConfig) -> OpenSearch:
    kwargs: dict[str, Any] = {
        "serializer": _Serializer(),
        "hosts": [{"host": h, "port": p} for h, p in cfg.hosts],
        "use_ssl": cfg.tls,
        "timeout": cfg.timeout_s,
        # One retry per other node on connection errors; a lone node that is down fails fast
        # (connection refused in <1 ms) and the hub answers 503 at once.
        "max_retries": max(0, len(cfg.hosts) - 1),
        "retry_on_timeout": False,  # a timed-out bulk may still land: the client retries, ids dedup
        "http_compress": cfg.compress,
        # urllib3 keeps 1 idle connection per host by default: with concurrent requests (hub
        # threads, parallel sub-bulks) every other request would open a new TCP connection.
        "pool_maxsize": 32,
    }
    if cfg.user is not None:
        kwargs["http_auth"] = (cfg.user, cfg.password or "")
    if cfg.tls:
        kwargs["verify_certs"] = cfg.verify
        kwargs["ssl_show_warn"] = cfg.verify  # verify=0 is an explicit choice: don't warn per request
        if cfg.ca_certs:
            kwargs["ca_certs"] = cfg.ca_certs
        if cfg.client_cert:  # mutual TLS: the cluster authenticates the hub by its certificate
            kwargs["client_cert"] = cfg.client_cert
            if cfg.client_key:
                kwargs["client_key"] = cfg.client_key
        if not cfg.verify:
            kwargs["ssl_assert_hostname"] = False
    return OpenSearch(**kwargs)


def reason(info: Any) -> str:
    """'type: reason' from an OpenSearch error body (or whatever it is), with its cause: a
    template refused says only "template after composition is invalid" at the top."""
    if isinstance(info, dict):
        err = info.get("error", info)
        if isinstance(err, dict):
            cause = err.get("caused_by")
            if err.get("type") == "search_phase_execution_exception" and isinstance(cause, dict):
                err, cause = cause, None
            out = f"{err.get('type', 'error')}: {err.get('reason', '')}"
            if isinstance(cause, dict):
                out += f" (caused by {cause.get('type', 'error')}: {cause.get('reason', '')})"
            return out[:500]
        return str(err)[:500]
    return str(info)[:500]


# Error types of a search the cluster refuses to run, whatever status it answers them with: the
# clause limit (indices.query.bool.max_clause_count) comes back as a 500.
_REFUSED = frozenset(("too_many_clauses", "too_many_nested_clauses", "query_shard_exception", "parse_exception"))


def _error_types(info: Any) -> set[str]:
    """Every `type` in an error body: its root causes, its `caused_by` chain, its failed shards."""
    out: set[str] = set()
    todo = [info]
    while todo:
        x = todo.pop()
        if isinstance(x, dict):
            if isinstance(x.get("type"), str):
                out.add(x["type"])
            todo.extend(x.values())
        elif isinstance(x, list):
            todo.extend(x)
    return out


def refused_query(status: int, info: Any) -> bool:
    """Did the cluster refuse a read because of the query it was given (not because it is
    unwell)? Any 400 of a read is; so is a 500 caused by the query's size or syntax."""
    return status == 400 or (status >= 500 and not _REFUSED.isdisjoint(_error_types(info)))


@contextmanager
def guard(what: str, query: bool = False) -> Iterator[None]:
    """Translate the client's exceptions. `query`: the call runs a client's query (search,
    count, aggregations), so a query the cluster refuses is a QueryError (400), never an
    outage (503, `obshub_store_up` 0, a line in the log)."""
    try:
        yield
    except ose.ConnectionError as e:  # also ConnectionTimeout, SSLError
        raise StoreUnavailable(f"OpenSearch unreachable during {what}: {e.__class__.__name__}: {e.error}") from None
    except ose.TransportError as e:
        status = e.status_code if isinstance(e.status_code, int) else 0
        why = reason(e.info)
        msg = f"OpenSearch {status} during {what}: {why}"
        if query and refused_query(status, e.info):
            raise QueryError(f"the store cannot run this query: {why}") from None
        if status == 429:
            raise StoreOverloaded(msg) from None
        if status == 409:
            raise Conflict(msg) from None
        if status == 404:
            raise NotFound(msg) from None
        if status >= 500 or status in (401, 403, 408):
            raise StoreUnavailable(msg) from None
        raise StoreError(msg) from None
    except ose.OpenSearchException as e:  # serialization and the like
        raise StoreError(f"OpenSearch client error during {what}: {e}") from None

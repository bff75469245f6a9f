"""Persistence. `open_store(url)` picks the backend from the URL scheme (docs/configuration.md):

    sqlite:///path/to/obshub.db                  embedded, zero setup (default)
    opensearch://[user:pass@]host:port[,host2:port...][?prefix=obshub&tls=1]

Only this package imports a database client: one place knows each database.
"""

from __future__ import annotations

from obshub.errors import ConfigError
from obshub.store.base import Project, SearchRequest, Store, WriteResult

__all__ = ["Project", "SearchRequest", "Store", "WriteResult", "open_store"]


def open_store(url: str) -> Store:
    """Build (not yet open) the store named by `url`; raises ConfigError naming the problem."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from obshub.store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if scheme in ("opensearch", "opensearchs"):
        from obshub.store.opensearch import OpenSearchStore

        return OpenSearchStore.from_url(url)
    raise ConfigError(
        f"OBSHUB_STORE: unsupported store URL {url!r}; expected sqlite:///path/to/obshub.db or opensearch://host:port"
    )

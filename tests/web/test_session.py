"""A web session is checked like an API token, in one place (`Hub.check_token_hash`): through the
hub's token cache, so a page load with a cached token costs no store query, and by the same
rules (`auth.authorize`). Revocation within token_cache_s: tests/contract/test_auth_api.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from obshub.store import open_store
from tests.hubproc import LiveHub
from tests.web.conftest import login_client

PAGES = ("/search", "/errors", "/analytics", "/tail", "/search?q=level:error")


class CountingStore:
    """The real store, counting its token lookups; every other call passes straight through."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.token_lookups = 0

    def find_token(self, token_hash: str) -> Any:
        self.token_lookups += 1
        return self._store.find_token(token_hash)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_page_loads_with_a_warm_token_cache_query_no_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/obshub.db"
    store = CountingStore(open_store(url))
    hub = LiveHub(url, store=store).start()  # token_cache_s: 10 s, the default
    try:
        with login_client(hub) as web:
            assert store.token_lookups == 1  # the login's own check fills the cache
            for path in PAGES:
                assert web.get(path).status_code == 200, path
            assert store.token_lookups == 1
            # The API with the same token shares the entry: pages and API go through one cache.
            assert hub.get("/api/v1/search").status_code == 200
            assert web.get("/search").status_code == 200
            assert store.token_lookups == 1
    finally:
        hub.stop()


def test_a_session_asks_the_store_again_once_the_cache_expired(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/obshub.db"
    store = CountingStore(open_store(url))
    hub = LiveHub(url, store=store, token_cache_s=0.5).start()
    try:
        with login_client(hub) as web:
            assert web.get("/search").status_code == 200
            assert store.token_lookups == 1
            time.sleep(0.6)
            assert web.get("/search").status_code == 200
            assert web.get("/errors").status_code == 200
            assert store.token_lookups == 2  # once per token_cache_s, not once per page
    finally:
        hub.stop()

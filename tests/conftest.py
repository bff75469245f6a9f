"""Fixtures shared by every test package: real stores, real hubs (tests/hubproc.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from obshub.store import Store, open_store
from tests.hubproc import LiveHub
from tests.opensearch_node import drop_prefix, opensearch_url  # noqa: F401  (session fixture)

BACKENDS = ["sqlite", "opensearch"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Long soaks run only when asked for (-m slow or OBSHUB_SOAK=1).
    if os.environ.get("OBSHUB_SOAK") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run with -m slow or OBSHUB_SOAK=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store of each backend (OpenSearch: a unique index prefix per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/obshub.db"
        return
    base = request.getfixturevalue("opensearch_url")
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}prefix=t{uuid.uuid4().hex[:10]}"
    yield url
    drop_prefix(url)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The fresh store of `store_url` (each backend), opened, closed after the test."""
    s = open_store(store_url)
    s.open()
    yield s
    s.close()


@pytest.fixture
def hub(store_url: str) -> Iterator[LiveHub]:
    """A live hub (real uvicorn on a free port) over a fresh store, with project `test`."""
    h = LiveHub(store_url).start()
    yield h
    h.stop()


@pytest.fixture
def sqlite_hub(tmp_path: Path) -> Iterator[LiveHub]:
    h = LiveHub(f"sqlite:///{tmp_path}/obshub.db").start()
    yield h
    h.stop()

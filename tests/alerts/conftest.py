"""Fixtures of the alerting tests: a real HTTP receiver, a real store of each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from obshub.store import Store, open_store
from tests.alerts.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    s.open()
    yield s
    s.close()

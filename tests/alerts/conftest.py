"""Fixtures of the alerting tests: a real HTTP receiver, a real store of each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from obshub.store import Store, open_store
from tests.alerts.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """For the tests that are not about the store: the embedded one, in a temporary file."""
    s = open_store(f"sqlite:///{tmp_path}/obshub.db")
    s.open()
    yield s
    s.close()

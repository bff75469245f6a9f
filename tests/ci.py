"""The one rule for a real component a test needs (OpenSearch, chromium, Prometheus, Go, npm):
locally its absence skips the test; in CI (CI=true) it fails the run, since a skipped test
proves nothing and CI must run them all."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "unavailable"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str) -> NoReturn:
    """Skip locally, fail in CI."""
    if in_ci():
        pytest.fail(f"required in CI (CI=true) but unavailable: {what}", pytrace=False)
    pytest.skip(f"unavailable: {what}")

"""Warnings about a failing dependency, without one line per failure.

While OpenSearch is down, every ingest request, every uptime tick (once a second) and every
probe result fails the same way: an hour's outage made thousands of identical warnings that
buried everything else in the log. An `OutageLog` writes the first failure at once, then at
most one line per `every_s` saying how long it has lasted and how many failures that line
stands for, and one line when the dependency works again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["OutageLog"]


class OutageLog:
    def __init__(
        self, logger: Any, event: str, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = logger
        self.event = event
        self.every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # when the current outage began; None = all well
        self._last = 0.0  # when its last line was written
        self._quiet = 0  # failures since that line

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, error: str, **fields: Any) -> None:
        now = self._clock()
        with self._lock:
            since = self._since
            if since is None:
                self._since = now
            elif now - self._last < self.every_s:
                self._quiet += 1
                return
            quiet, self._quiet, self._last = self._quiet, 0, now
        if since is None:
            self._log.warning(self.event, error=error, **fields)
        else:
            self._log.warning(
                self.event, error=error, failing_for_s=round(now - since), failures_not_logged=quiet, **fields
            )

    def ok(self) -> None:
        """Call on success; cheap when nothing was failing (no lock)."""
        if self._since is None:
            return
        now = self._clock()
        with self._lock:
            if self._since is None:
                return
            lasted, quiet = now - self._since, self._quiet
            self._since, self._quiet = None, 0
        self._log.info(f"{self.event}: recovered", failed_for_s=round(lasted, 1), failures_not_logged=quiet)

"""A bounded pool of SQLite reader connections, shared by whichever threads read.

Why not one connection per thread (what the store did first): the hub runs store reads on
anyio's worker threads, which stop after 10 s idle and are replaced by fresh ones, so every
burst of queries opened new connections (each with its own page cache) and nothing closed them
before the store closed. Measured at 5M events: hub RSS 47 -> 212 MiB after one bench run. Here
at most `size` connections exist at any time, a thread takes one for one read and gives it
back, and connections unused for `idle_s` are closed.

The most recently returned connection is handed out first: its page cache is the warm one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from obshub.errors import StoreOverloaded, StoreUnavailable

__all__ = ["ReaderPool"]


class ReaderPool:
    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int, idle_s: float, wait_s: float) -> None:
        self._connect = connect
        self.size = size
        self.idle_s = idle_s
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[tuple[sqlite3.Connection, float]] = []  # (connection, returned at), newest last
        self._open = 0
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or in use (at most `size`)."""
        with self._lock:
            return self._open

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """One reader connection for the duration of the block. Waits up to `wait_s` when all
        `size` are busy, then raises StoreOverloaded (the hub answers 503 + Retry-After)."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        if not self._slots.acquire(timeout=self.wait_s):
            raise StoreOverloaded(f"all {self.size} sqlite reader connections busy for {self.wait_s:.0f} s")
        try:
            conn = self._take()
            try:
                yield conn
            finally:
                self._give(conn)
        finally:
            self._slots.release()

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            stale = self._stale(time.monotonic())
            conn = self._idle.pop()[0] if self._idle else None
            if conn is None:
                self._open += 1  # counted before connecting: the slot is ours either way
        for c in stale:
            c.close()
        if conn is not None:
            return conn
        try:
            return self._connect()
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    def _give(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            stale = self._stale(time.monotonic())
            if self._closed or conn.in_transaction:  # a read never leaves one open; be safe
                stale.append(conn)
                self._open -= 1
            else:
                self._idle.append((conn, time.monotonic()))
        for c in stale:
            c.close()

    def _stale(self, now: float) -> list[sqlite3.Connection]:
        """Take the connections idle longer than `idle_s` out of the pool (under the lock)."""
        n = 0
        while n < len(self._idle) and now - self._idle[n][1] > self.idle_s:
            n += 1  # the list is in order of return: the oldest first
        stale = [c for c, _ in self._idle[:n]]
        del self._idle[:n]
        self._open -= n
        return stale

    def close(self) -> None:
        """Close the idle connections now; ones in use close when they are given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for c, _ in idle:
            c.close()

    def reopen(self) -> None:
        with self._lock:
            self._closed = False

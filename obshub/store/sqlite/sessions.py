"""Web session state every hub on this store shares (the OpenSearch twin is
`opensearch/sessions.py`): the key that signs session cookies when `secret_key` is unset (a
`meta` row, created if absent, so replicas starting at once agree on one key) and the sessions
ended by /logout (`ended_sessions`, one row per logout, kept until the cookie would have expired
anyway: each logout purges the rows past their `expires_at`, so the table holds at most the last
12 hours of logouts).
"""

from __future__ import annotations

from obshub.events import now_us
from obshub.store.sqlite.db import Db

__all__ = ["Sessions"]


class Sessions:
    def __init__(self, db: Db) -> None:
        self._db = db

    def shared_secret(self, name: str, candidate: str) -> str:
        key = f"secret:{name}"
        with self._db.write() as w:
            w.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, candidate))
            row = w.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    def end_session(self, session_id: str, expires_at: int) -> None:
        with self._db.write() as w:
            w.execute("DELETE FROM ended_sessions WHERE expires_at < ?", (now_us(),))
            w.execute("INSERT OR REPLACE INTO ended_sessions (id, expires_at) VALUES (?, ?)", (session_id, expires_at))

    def session_ended(self, session_id: str) -> bool:
        return bool(self._db.read("SELECT 1 FROM ended_sessions WHERE id = ?", (session_id,)))

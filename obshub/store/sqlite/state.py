"""Projects and tokens (the OpenSearch twin is `opensearch/state.py`): small tables, written
rarely and read when a token is checked (obshub/auth.py caches the answer for `token_cache_s`).

Tokens are stored by SHA-256 hash only; a revoked token keeps its row (`revoked_at`), so
`obshub token list` still shows what it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from obshub.errors import Conflict
from obshub.events import now_us
from obshub.store.base import NewToken, Project, TokenRecord, TokenScope
from obshub.store.sqlite.db import Db

__all__ = ["State"]

_TOKEN_COLS = "hash, project_id, scope, label, created_at, revoked_at"


class State:
    def __init__(self, db: Db) -> None:
        self._db = db

    def is_empty(self) -> bool:
        return not self._db.read("SELECT 1 FROM projects LIMIT 1")

    def create_project(self, name: str, public_key: str, token_hashes: Sequence[NewToken]) -> Project:
        now = now_us()
        try:
            with self._db.write() as w:
                cur = w.execute(
                    "INSERT INTO projects (name, public_key, created_at) VALUES (?, ?, ?)", (name, public_key, now)
                )
                pid = int(cur.lastrowid or 0)
                w.executemany(
                    "INSERT INTO tokens (hash, project_id, scope, label, created_at) VALUES (?, ?, ?, ?, ?)",
                    [(t[1], pid, t[0], t[2] if len(t) > 2 else "", now) for t in token_hashes],
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"project {name!r} already exists") from None
        return Project(pid, name, public_key, now)

    def add_token(self, project_id: int, scope: TokenScope, token_hash: str, label: str = "") -> None:
        with self._db.write() as w:
            w.execute(
                "INSERT OR IGNORE INTO tokens (hash, project_id, scope, label, created_at) VALUES (?, ?, ?, ?, ?)",
                (token_hash, project_id, scope, label, now_us()),
            )

    def _projects(self, where: str, params: Sequence[Any]) -> list[Project]:
        rows = self._db.read(f"SELECT id, name, public_key, created_at FROM projects {where}", params)
        return [Project(*r) for r in rows]

    def get_project(self, name: str) -> Project | None:
        found = self._projects("WHERE name = ?", (name,))
        return found[0] if found else None

    def get_project_by_id(self, project_id: int) -> Project | None:
        found = self._projects("WHERE id = ?", (project_id,))
        return found[0] if found else None

    def list_projects(self) -> list[Project]:
        return self._projects("ORDER BY id", ())

    def find_token(self, token_hash: str) -> tuple[Project, TokenScope] | None:
        rows = self._db.read(
            "SELECT p.id, p.name, p.public_key, p.created_at, t.scope FROM tokens t "
            "JOIN projects p ON p.id = t.project_id WHERE t.hash = ? AND t.revoked_at IS NULL",
            (token_hash,),
        )
        if not rows:
            return None
        r = rows[0]
        return Project(r[0], r[1], r[2], r[3]), r[4]

    def list_tokens(self, project_id: int | None = None) -> list[TokenRecord]:
        where, params = ("WHERE project_id = ?", (project_id,)) if project_id is not None else ("", ())
        rows = self._db.read(f"SELECT {_TOKEN_COLS} FROM tokens {where} ORDER BY created_at, hash", params)
        return [TokenRecord(*r) for r in rows]

    def revoke_token(self, token_hash: str) -> TokenRecord | None:
        with self._db.write() as w:
            w.execute("UPDATE tokens SET revoked_at = ? WHERE hash = ? AND revoked_at IS NULL", (now_us(), token_hash))
            row = w.execute(f"SELECT {_TOKEN_COLS} FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
        return TokenRecord(*row) if row else None

"""A SQLite store made before tokens had labels and revocation: `open` adds the columns, and its
tokens (all made by `project create` then) can be listed and revoked like new ones."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from obshub.store.sqlite import SqliteStore

_OLD_SCHEMA = """
CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, public_key TEXT NOT NULL UNIQUE,
                       created_at INTEGER NOT NULL);
CREATE TABLE tokens (hash TEXT PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
                     scope TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO projects VALUES (1, 'shop', 'pk', 5);
"""


def test_an_older_store_gets_labels_and_revocation(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    h = hashlib.sha256(b"obr_old").hexdigest()
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    conn.execute("INSERT INTO tokens VALUES (?, 1, 'read', 5)", (h,))
    conn.commit()
    conn.close()

    store = SqliteStore(path)
    store.open()
    try:
        [token] = store.list_tokens(1)
        assert (token.id, token.scope, token.label, token.created_at, token.revoked_at) == (h[:12], "read", "", 5, None)
        assert store.find_token(h) is not None
        store.add_token(1, "ingest", "h2", "new")
        assert [(t.hash, t.label) for t in store.list_tokens()][1:] == [("h2", "new")]
        revoked = store.revoke_token(h)
        assert revoked is not None and revoked.revoked_at is not None
        assert store.find_token(h) is None
        assert store.revoke_token(h) == revoked  # twice: the first revoked_at stays
        assert store.revoke_token("unknown") is None
    finally:
        store.close()
    store = SqliteStore(path)
    store.open()  # a second open: the columns are there already
    try:
        assert store.find_token(h) is None and store.list_tokens(1)[0] == revoked
    finally:
        store.close()

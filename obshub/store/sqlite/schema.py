"""The SQLite store's tables and indexes, and how a store made by an older hub is brought up to
date at `open` (added columns, dropped indexes): one place to read what is on disk.

Why the indexes are shaped this way:
- `UNIQUE (project_id, id)`: `INSERT OR IGNORE` on it means a replayed batch stores nothing
  twice (writer.py).
- Partial indexes per correlation key (WHERE key IS NOT NULL): most log lines lack most keys,
  so the indexes stay small and cheap to maintain.
- The FTS rows are added by the writer in the same transaction as their events (writer.py);
  only their deletion is a trigger.
"""

from __future__ import annotations

import sqlite3

from obshub.store.base import hash_token
from obshub.store.sqlite.compile import INDEXED_KEYS
from obshub.store.sqlite.db import tx

__all__ = ["COLS", "SCHEMA", "SELECT", "prepare"]

# The columns of an event as the store reads and writes them (after project_id).
COLS = (
    "id",
    "ts",
    "received_at",
    "kind",
    "level",
    "message",
    "service",
    "host",
    "env",
    "release",
    "logger",
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
    "session_id",
    "name",
    "error",
    "group_id",
    "attrs",
)
SELECT = ", ".join(f"e.{c}" for c in COLS)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS projects (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, public_key TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tokens (
        hash TEXT PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
        scope TEXT NOT NULL, created_at INTEGER NOT NULL, label TEXT NOT NULL DEFAULT '',
        revoked_at INTEGER) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS events (
        rowid INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, id TEXT NOT NULL,
        ts INTEGER NOT NULL, received_at INTEGER NOT NULL, kind TEXT NOT NULL,
        level TEXT NOT NULL, message TEXT, service TEXT, host TEXT, env TEXT, release TEXT,
        logger TEXT, request_id TEXT, trace_id TEXT, span_id TEXT, user_id TEXT,
        session_id TEXT, name TEXT, error TEXT, group_id TEXT, attrs TEXT,
        UNIQUE (project_id, id))""",
    """CREATE TABLE IF NOT EXISTS error_groups (
        project_id INTEGER NOT NULL, id TEXT NOT NULL, title TEXT NOT NULL, type TEXT, culprit TEXT,
        level TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'unresolved',
        first_seen INTEGER NOT NULL, resolved_at INTEGER, regressed_at INTEGER, merged_into TEXT,
        PRIMARY KEY (project_id, id)) WITHOUT ROWID""",
    # Web sessions ended by /logout (sessions.py), until their cookie would have expired.
    """CREATE TABLE IF NOT EXISTS ended_sessions (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID""",
    # Small shared documents with a version (records.py): alert rules and state, the jobs' lease.
    """CREATE TABLE IF NOT EXISTS records (
        kind TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        value TEXT NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID""",
    # Values of defined metrics per hour and day (rollups.py): a few rows per metric and hour.
    # `value` has no type: counts stay integers, the other measures floats (or NULL).
    """CREATE TABLE IF NOT EXISTS rollups (
        project_id INTEGER NOT NULL, metric TEXT NOT NULL, interval TEXT NOT NULL, t INTEGER NOT NULL,
        grp TEXT NOT NULL, count INTEGER NOT NULL, value, PRIMARY KEY (project_id, metric, interval, t, grp))
        WITHOUT ROWID""",
    # Their retention (`delete_rollups`, each rollup run) reads only the rows it deletes.
    "CREATE INDEX IF NOT EXISTS ix_rollups_t ON rollups (t)",
    "CREATE INDEX IF NOT EXISTS ix_events_ts ON events (project_id, ts)",
    # `level:error` walked the time index until it had a page (1% of events are errors: ~450 ms
    # at 5M); this one starts at the level: 0.1 ms. 117 MB at 5M events (+5%).
    "CREATE INDEX IF NOT EXISTS ix_events_level ON events (project_id, level, ts)",
    # Analytics only reads kind=event rows: partial indexes stay small on a log-heavy stream.
    # Both are covering (`kind` is listed because SQLite 3.40 does not count a partial index's
    # WHERE columns as covered): by name for one event, by time for all of them.
    "CREATE INDEX IF NOT EXISTS ix_events_ev_name ON events (project_id, name, ts, user_id, kind) WHERE kind = 'event'",
    "CREATE INDEX IF NOT EXISTS ix_events_ev_ts ON events (project_id, ts, name, user_id, kind) WHERE kind = 'event'",
    # The errors list: every column its aggregation reads, for error occurrences only (1% of a
    # stream), in time order so a range reads only its own occurrences (2.8 MB at 5M).
    "CREATE INDEX IF NOT EXISTS ix_events_errors ON events (project_id, ts, group_id, user_id, host, kind) "
    "WHERE kind = 'error' AND group_id IS NOT NULL",
    # Uptime results per check over time (the Checks page's bars, aggs.check_series): check
    # events only, a few per check and minute.
    "CREATE INDEX IF NOT EXISTS ix_events_checks ON events (project_id, name, ts) WHERE kind = 'check'",
    *[
        f"CREATE INDEX IF NOT EXISTS ix_events_{k} ON events (project_id, {k}, ts) WHERE {k} IS NOT NULL"
        for k in INDEXED_KEYS
    ],
    # The word rule of both stores (docs/api.md, "Words"; OpenSearch: mappings.py): a word is a
    # run of letters, digits and '_' (tokenchars '_' keeps mod_jk or user_id whole), anything
    # else separates; unicode61 folds case and strips accents. Changing it means rebuilding the
    # index of every existing store.
    """CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
        message, content='events', content_rowid='rowid', tokenize="unicode61 tokenchars '_'")""",
    """CREATE TRIGGER IF NOT EXISTS events_ad AFTER DELETE ON events WHEN old.message IS NOT NULL
        BEGIN INSERT INTO events_fts (events_fts, rowid, message) VALUES ('delete', old.rowid, old.message); END""",
]

# Indexes a newer schema replaced (ix_events_name: by the covering ix_events_ev_name).
_DROPPED_INDEXES = ("ix_events_name",)

# Columns added after the first release: a store made by an older hub gets them at `open`.
_ADDED_COLUMNS = {"tokens": ("label TEXT NOT NULL DEFAULT ''", "revoked_at INTEGER")}


def prepare(w: sqlite3.Connection) -> None:
    """Make the schema on the writer connection, or bring an older store's up to date."""
    if not w.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall():
        # A new store: freed pages can be given back to the file system after retention
        # (ops.py, `reclaim`). It must be chosen before the first table; an older store converts
        # with VACUUM (docs/configuration.md).
        w.execute("PRAGMA auto_vacuum = INCREMENTAL")
    w.execute("PRAGMA journal_mode = WAL")
    with tx(w):
        for stmt in SCHEMA:
            w.execute(stmt)
        for name in _DROPPED_INDEXES:
            w.execute(f"DROP INDEX IF EXISTS {name}")
        for table, columns in _ADDED_COLUMNS.items():
            have = {r[1] for r in w.execute(f"PRAGMA table_info({table})")}
            for col in columns:
                if col.split()[0] not in have:
                    w.execute(f"ALTER TABLE {table} ADD COLUMN {col}")
        narrow_dsn_keys(w)
        w.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1')")


def narrow_dsn_keys(w: sqlite3.Connection) -> int:
    """The DSN key `project create` made was an ingest token before the `sentry` scope existed:
    it worked on /api/v1/ingest too, though it ships inside browser apps. Narrow it to `sentry`
    (the Sentry routes only). Found by its hash (the project's public key), whatever its label;
    other ingest tokens, even ones used in a DSN, are left alone. A no-op once done."""
    w.create_function("obshub_token_hash", 1, hash_token, deterministic=True)
    cur = w.execute(
        "UPDATE tokens SET scope = 'sentry' WHERE scope = 'ingest' "
        "AND hash IN (SELECT obshub_token_hash(public_key) FROM projects)"
    )
    return cur.rowcount

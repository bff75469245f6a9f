"""Per-file read offsets, persisted atomically in `<state_dir>/checkpoints.json`.

Semantics (see docs/agent.md "Delivery guarantees"): a file's offset is advanced only after every
event before it is fsynced into the on-disk spool; the spool in turn releases a record only
after the hub answered 2xx for it. So a line leaves the agent's custody only when the hub has
stored it, and a crash at any point replays from the last durable position (same event ids ->
the hub counts duplicates instead of storing them twice).

Entry keys are "dev:ino". `fp` is a hash of the file's head (first line, at most 256 bytes) and
`gen` counts truncations (copytruncate): both feed the file uid, so a reused inode or a
truncated-and-rewritten file never shares event ids with its predecessor. `sig` hashes the first
`sig_len` bytes (up to 4 KiB, never past `offset`): what a copy of the file must start with.

`ended` remembers file generations that are gone (truncated, deleted) with how far they were read,
so a copy found later (logrotate `copytruncate` writes `app.log.1` as a new inode) is resumed where
its original stopped instead of being shipped again (sources/file.py, `_copy_start`), under the
original's event ids (`uid`).

A corrupt state file is reported, moved aside to `checkpoints.json.corrupt-<epoch>` and
replaced by an empty state: files are then re-read from the start and the hub drops the
duplicates by id (at-least-once, never loss).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._atomic import atomic_write

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "CheckpointStore", "Ended"]

CHECKPOINT_VERSION = 2  # 2 added `sig`/`sig_len` and `ended`; version 1 files still load
_log = logging.getLogger("obshub_agent.checkpoints")
_PRUNE_AFTER_S = 7 * 86400  # entries of files not seen for a week are forgotten
_MAX_ENDED = 64  # a copy is normally found seconds after its original ended; ~16 KB per save


@dataclass
class Checkpoint:
    path: str
    dev: int
    ino: int
    fp: str | None  # None: not yet identified (after a truncation): adopt the next head seen
    fp_len: int
    gen: int
    offset: int
    seen: float  # last time the file was found or read (epoch s), for pruning
    sig: str | None = None  # hash of the first sig_len bytes; None until something was read
    sig_len: int = 0
    uid: str | None = None  # a copy's events keep the ids of its original's (None: its own uid)

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.ino}"


@dataclass
class Ended:
    """A file generation that is gone (truncated or deleted), read up to `offset`: a copy of it,
    recognised by `fp` and `sig`, is read from `offset` on."""

    path: str
    fp: str
    fp_len: int
    sig: str
    sig_len: int
    offset: int
    seen: float  # when it ended (epoch s), for pruning
    uid: str  # its events' uid: a copy's lines get the very ids, so a replayed overlap is deduplicated
    # its first min(offset, 4 KiB) bytes while the agent runs (not saved: 256 KiB per save for 64
    # records): a copy shorter than `sig_len` is then recognised too; after a restart `sig` only
    head: bytes = field(default=b"", repr=False, compare=False)


class CheckpointStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "checkpoints.json"
        self.entries: dict[str, Checkpoint] = {}
        self.ended: list[Ended] = []  # oldest first
        self.corrupt_files = 0  # metric: state files found corrupt and moved aside
        self.saves = 0

    def load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") not in (1, CHECKPOINT_VERSION):
                raise ValueError(f"unknown version {doc.get('version') if isinstance(doc, dict) else doc!r}")
            entries = {}
            for key, e in doc["files"].items():
                cp = Checkpoint(**e)
                if cp.key != key or cp.offset < 0:
                    raise ValueError(f"inconsistent entry {key}")
                entries[key] = cp
            ended = [Ended(**e) for e in doc.get("ended", [])]
        except (ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            self.corrupt_files += 1
            _log.error(
                "checkpoint file %s is corrupt (%s): moved to %s; files will be re-read from their "
                "start and the hub will drop the duplicates by id",
                self.path,
                exc,
                aside,
            )
            return
        self.entries = entries
        self.ended = ended

    def save(self) -> None:
        now = time.time()
        for key in [k for k, e in self.entries.items() if now - e.seen > _PRUNE_AFTER_S]:
            del self.entries[key]
        self.ended = [e for e in self.ended if now - e.seen <= _PRUNE_AFTER_S][-_MAX_ENDED:]
        doc = {
            "version": CHECKPOINT_VERSION,
            "files": {k: asdict(e) for k, e in self.entries.items()},
            "ended": [{k: v for k, v in asdict(e).items() if k != "head"} for e in self.ended],
        }
        atomic_write(self.path, json.dumps(doc, separators=(",", ":")).encode())
        self.saves += 1

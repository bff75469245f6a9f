"""Per-file read offsets, persisted atomically in `<state_dir>/checkpoints.json`.

Semantics (see docs/agent.md "Delivery guarantees"): a file's offset is advanced only after every
event before it is fsynced into the on-disk spool; the spool in turn releases a record only
after the hub answered 2xx for it. So a line leaves the agent's custody only when the hub has
stored it, and a crash at any point replays from the last durable position (same event ids ->
the hub counts duplicates instead of storing them twice).

Entry keys are "dev:ino". `fp` is a hash of the file's head (first line, at most 256 bytes) and
`gen` counts truncations (copytruncate): both feed the file uid, so a reused inode or a
truncated-and-rewritten file never shares event ids with its predecessor.

A corrupt state file is reported, moved aside to `checkpoints.json.corrupt-<epoch>` and
replaced by an empty state: files are then re-read from the start and the hub drops the
duplicates by id (at-least-once, never loss).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ._atomic import atomic_write

__all__ = ["Checkpoint", "CheckpointStore", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1
_log = logging.getLogger("obshub_agent.checkpoints")
_PRUNE_AFTER_S = 7 * 86400  # entries of files not seen for a week are forgotten


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

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.ino}"


class CheckpointStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "checkpoints.json"
        self.entries: dict[str, Checkpoint] = {}
        self.corrupt_files = 0  # metric: state files found corrupt and moved aside
        self.saves = 0

    def load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"unknown version {doc.get('version') if isinstance(doc, dict) else doc!r}")
            entries = {}
            for key, e in doc["files"].items():
                cp = Checkpoint(**e)
                if cp.key != key or cp.offset < 0:
                    raise ValueError(f"inconsistent entry {key}")
                entries[key] = cp
        except (ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            self.corrupt_files += 1
            _log.error("checkpoint file %s is corrupt (%s): moved to %s; files will be re-read from their "
                       "start and the hub will drop the duplicates by id", self.path, exc, aside)
            return
        self.entries = entries

    def save(self) -> None:
        now = time.time()
        for key in [k for k, e in self.entries.items() if now - e.seen > _PRUNE_AFTER_S]:
            del self.entries[key]
        doc = {"version": CHECKPOINT_VERSION, "files": {k: asdict(e) for k, e in self.entries.items()}}
        atomic_write(self.path, json.dumps(doc, separators=(",", ":")).encode())
        self.saves += 1

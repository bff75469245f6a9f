"""File tailing: discovery by glob, identity, rotation, truncation, partial lines.

Identity of a file = (st_dev, st_ino) + a hash of its head (the first line, at most 256 bytes;
nothing is read from a file before it has a complete first line or 256 bytes). The inode pair
follows a file through renames; the head hash tells a reused inode from its predecessor.

- Rename rotation: the open fd keeps being read to EOF; a file that left the globs (or was
  deleted) is closed once idle at EOF for `close_removed_after_ms`; its last line is emitted
  even without a trailing newline at that moment (nothing will complete it any more).
- copytruncate: size < read position -> the generation is bumped (new event ids) and reading
  restarts at 0. The usual copytruncate caveat applies to every tailer: lines written between
  the copy and the truncate, or not yet read when the truncate happens, exist only in the copy.
- Partial last line: held in memory (at most `max_line_bytes`) until its newline arrives; the
  checkpoint stays at its start, so a restart reads it again whole.
- Rotation while the agent is down: at start, checkpointed files no glob finds are looked up
  by inode in their old directory (app.log -> app.log.1) and finished before being dropped.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import stat as stat_mod
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Callable

from ..checkpoints import Checkpoint, CheckpointStore
from ..config import AgentConfig, InputConfig
from ..parse import FileEncoder, TimestampParser

__all__ = ["FileSource", "TailedFile", "file_uid"]

_log = logging.getLogger("obshub_agent.sources.file")
_HEAD = 256  # bytes hashed at most to identify a file


def file_uid(host: str, dev: int, ino: int, fp: str, gen: int) -> str:
    """Stable per (host, file, truncation generation); event id = f"{uid}-{offset:x}". Version 1."""
    return hashlib.blake2b(f"v1|{host}|{dev}|{ino}|{fp}|{gen}".encode(), digest_size=10).hexdigest()


def _head_fp(fd: int) -> tuple[str, int] | None:
    head = os.pread(fd, _HEAD, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        n = nl + 1
    elif len(head) >= _HEAD:
        n = _HEAD
    else:
        return None
    return hashlib.blake2b(head[:n], digest_size=8).hexdigest(), n


def _fp_of(fd: int, n: int) -> str | None:
    head = os.pread(fd, n, 0)
    return hashlib.blake2b(head, digest_size=8).hexdigest() if len(head) == n else None


@dataclass
class TailedFile:
    fd: int
    cp: Checkpoint  # the entry in the checkpoint store (offset = committed position)
    input: InputConfig
    encoder: FileEncoder
    read_pos: int  # next byte to read
    partial: bytes = b""
    skipping: bool = False  # inside an over-long line, dropping bytes up to its newline
    last_data: float = field(default_factory=time.monotonic)
    gone_since: float | None = None  # no glob finds it any more (renamed away or deleted)
    size: int = 0

    @property
    def committed(self) -> int:
        """Everything before this offset has been handed over as events."""
        pend = self.encoder.pending_offset
        return pend if pend is not None else self.read_pos - len(self.partial)


class FileSource:
    def __init__(self, cfg: AgentConfig, checkpoints: CheckpointStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.cps = checkpoints
        self.files: dict[str, TailedFile] = {}
        self._clock = clock
        self._ts = {id(i): TimestampParser(i.ts_format, cfg.timezone) for i in cfg.inputs}
        self._first_discovery = True
        self._forget: list[str] = []  # keys of deleted files, dropped at the next checkpoint
        # metrics
        self.lines_bytes = 0
        self.lines_read = 0
        self.truncations = 0
        self.rotations = 0
        self.opened = 0
        self.closed = 0

    def reconfigure(self, cfg: AgentConfig, out: list[bytes]) -> None:
        """SIGHUP: new inputs apply to files opened from now on; offsets are kept."""
        self.cfg = cfg
        self._ts = {id(i): TimestampParser(i.ts_format, cfg.timezone) for i in cfg.inputs}
        for key, tf in list(self.files.items()):
            inp = self._input_for(tf.cp.path)
            if inp is None:
                continue  # no longer configured: finished as a removed file
            tf.input = inp
            tf.encoder.flush(out)  # a multiline group in progress is emitted under the old rules
            tf.encoder = self._encoder(inp, tf.cp)

    # -- discovery ----------------------------------------------------------------------------
    def _input_for(self, path: str) -> InputConfig | None:
        for inp in self.cfg.inputs:
            if any(fnmatch(path, x) for x in inp.exclude):
                continue
            if any(fnmatch(path, p) for p in inp.paths):
                return inp
        return None

    def discover(self, out: list[bytes]) -> None:
        now = time.monotonic()
        seen: set[str] = set()
        for inp in self.cfg.inputs:
            for pattern in inp.paths:
                for path in sorted(glob.glob(pattern)):
                    if any(fnmatch(path, x) for x in inp.exclude):
                        continue
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    if not stat_mod.S_ISREG(st.st_mode):
                        continue
                    key = f"{st.st_dev}:{st.st_ino}"
                    if key in seen:
                        continue
                    seen.add(key)
                    tf = self.files.get(key)
                    if tf is not None:
                        tf.gone_since = None
                        tf.cp.seen = time.time()
                        continue
                    cp = self.cps.entries.get(key)
                    if cp is not None and cp.fp is not None and st.st_size == cp.offset:
                        cp.seen = time.time()
                        continue  # closed as inactive and unchanged: do not reopen
                    self._open(path, st, inp)
        if self._first_discovery:
            self._first_discovery = False
            self._recover_rotated(seen)
        for key, tf in self.files.items():
            if key not in seen and tf.gone_since is None:
                tf.gone_since = now
                self.rotations += 1

    def _recover_rotated(self, seen: set[str]) -> None:
        """Files checkpointed but not found: renamed while the agent was down? Finish them."""
        by_dir: dict[str, list[Checkpoint]] = {}
        for key, cp in self.cps.entries.items():
            if key not in seen and key not in self.files and cp.fp is not None:
                by_dir.setdefault(os.path.dirname(cp.path) or ".", []).append(cp)
        for d, cps in by_dir.items():
            want = {(cp.dev, cp.ino): cp for cp in cps}
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for de in entries:
                try:
                    st = de.stat(follow_symlinks=False)
                except OSError:
                    continue
                old = want.get((st.st_dev, st.st_ino))
                if old is None or not stat_mod.S_ISREG(st.st_mode) or st.st_size <= old.offset:
                    continue
                inp = self._input_for(old.path)
                if inp is None:
                    continue
                _log.info("finishing %s (was %s, rotated while the agent was down) from offset %d",
                          de.path, old.path, old.offset)
                tf = self._open(de.path, st, inp, keep_path=old.path)
                if tf is not None:
                    tf.gone_since = time.monotonic()

    def _encoder(self, inp: InputConfig, cp: Checkpoint) -> FileEncoder:
        assert cp.fp is not None
        uid = file_uid(self.cfg.host, cp.dev, cp.ino, cp.fp, cp.gen)
        return FileEncoder(inp, host=self.cfg.host, uid=uid, path=cp.path, ts=self._ts[id(inp)], clock=self._clock)

    def _open(self, path: str, st: os.stat_result, inp: InputConfig, keep_path: str | None = None) -> TailedFile | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            _log.warning("cannot open %s: %s", path, exc)
            return None
        fst = os.fstat(fd)
        key = f"{fst.st_dev}:{fst.st_ino}"
        if key in self.files:
            os.close(fd)
            return None
        head = _head_fp(fd)
        if head is None:  # no complete first line yet: identify it later
            os.close(fd)
            return None
        fp, fp_len = head
        cp = self.cps.entries.get(key)
        if cp is None:
            offset = 0
            if inp.start_at == "end" and self._first_discovery:
                offset = fst.st_size  # existing backlog skipped by request; lines after it are read
            cp = Checkpoint(path=path, dev=fst.st_dev, ino=fst.st_ino, fp=fp, fp_len=fp_len, gen=0,
                            offset=offset, seen=time.time())
            self.cps.entries[key] = cp
        elif cp.fp is None:  # truncated earlier: adopt the new head with the already bumped generation
            cp.fp, cp.fp_len = fp, fp_len
        elif _fp_of(fd, cp.fp_len) != cp.fp:
            _log.info("%s: inode %s now holds different content (reused inode or rewritten file): "
                      "reading from the start as a new file", path, key)
            cp.fp, cp.fp_len, cp.gen, cp.offset, cp.path = fp, fp_len, cp.gen + 1, 0, path
        elif fst.st_size < cp.offset:
            _log.info("%s: truncated while the agent was down (size %d < offset %d): reading from the start",
                      path, fst.st_size, cp.offset)
            self.truncations += 1
            cp.gen, cp.offset = cp.gen + 1, 0
        if keep_path:
            cp.path = keep_path  # attrs.file keeps the name the file was discovered under
        cp.seen = time.time()
        tf = TailedFile(fd=fd, cp=cp, input=inp, encoder=self._encoder(inp, cp), read_pos=cp.offset,
                        size=fst.st_size)
        self.files[key] = tf
        self.opened += 1
        _log.debug("tailing %s (%s) from offset %d", path, key, cp.offset)
        return tf

    # -- reading --------------------------------------------------------------------------------
    def read_pass(self, out: list[bytes], chunk: int | None = None) -> int:
        """One read (at most `chunk`, default read_chunk_bytes) from every open file. Returns bytes read."""
        total = 0
        chunk = chunk or self.cfg.read_chunk_bytes
        for key in list(self.files):
            tf = self.files[key]
            data = os.pread(tf.fd, chunk, tf.read_pos)
            if data:
                tf.read_pos += len(data)
                tf.last_data = time.monotonic()
                total += len(data)
                self.lines_read += data.count(b"\n")
                self._consume(tf, data, out)
        self.lines_bytes += total
        return total

    def _consume(self, tf: TailedFile, data: bytes, out: list[bytes]) -> None:
        maxlen = self.cfg.max_line_bytes
        if tf.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return
            tf.skipping = False
            data = data[nl + 1:]
            tf.partial = b""
            if not data:
                return
        buf = tf.partial + data if tf.partial else data
        base = tf.read_pos - len(buf)  # file offset of buf[0]
        nl = buf.rfind(b"\n")
        if nl < 0:
            tf.partial = buf
        else:
            tf.partial = buf[nl + 1:]
            tf.encoder.feed(buf[: nl + 1] if nl + 1 < len(buf) else buf, base, out)
        if len(tf.partial) > maxlen:
            # an over-long line: ship its first max_line_bytes, drop the rest up to its newline
            cut = tf.partial[:maxlen]
            tf.encoder.feed(cut + b"\n", tf.read_pos - len(tf.partial), out)
            _log.warning("%s: line at offset %d longer than max_line_bytes=%d: truncated",
                         tf.cp.path, tf.read_pos - len(tf.partial), maxlen)
            tf.partial = b""
            tf.skipping = True

    def housekeeping(self, out: list[bytes]) -> None:
        """Idle files: multiline timeouts, truncation, closing removed and inactive files."""
        now_m = time.monotonic()
        now = self._clock()
        for key in list(self.files):
            tf = self.files[key]
            tf.encoder.poll(now, out)
            try:
                st = os.fstat(tf.fd)
            except OSError:
                st = None
            if st is not None:
                tf.size = st.st_size
                if st.st_size < tf.read_pos or (tf.cp.fp is not None and _fp_of(tf.fd, tf.cp.fp_len) != tf.cp.fp):
                    # smaller than what was read, or (truncated and already regrown) a different head
                    self._truncated(tf, st.st_size, out)
                    continue
                if st.st_size > tf.read_pos:
                    continue  # more to read: not idle
            idle = now_m - tf.last_data
            deleted = st is None or st.st_nlink == 0
            removed = deleted or tf.gone_since is not None
            if removed and idle * 1000 >= self.cfg.close_removed_after_ms:
                self._close(tf, out, emit_partial=True, forget=deleted)
            elif idle * 1000 >= self.cfg.close_inactive_ms and not tf.partial and tf.encoder.pending_offset is None:
                self._close(tf, out, emit_partial=False, forget=False)

    def _truncated(self, tf: TailedFile, size: int, out: list[bytes]) -> None:
        _log.info("%s: truncated (size %d < read position %d; copytruncate?): reading from the start",
                  tf.cp.path, size, tf.read_pos)
        self.truncations += 1
        tf.encoder.flush(out)
        if tf.partial and not tf.skipping:
            tf.encoder.feed(tf.partial + b"\n", tf.read_pos - len(tf.partial), out)
        cp = tf.cp
        os.close(tf.fd)
        del self.files[cp.key]
        self.closed += 1
        # the next open adopts the new head under the next generation, from offset 0
        cp.fp, cp.gen, cp.offset = None, cp.gen + 1, 0

    def _close(self, tf: TailedFile, out: list[bytes], *, emit_partial: bool, forget: bool) -> None:
        tf.encoder.flush(out)
        if emit_partial and tf.partial and not tf.skipping:
            tf.encoder.feed(tf.partial + b"\n", tf.read_pos - len(tf.partial), out)
            tf.partial = b""
        os.close(tf.fd)
        del self.files[tf.cp.key]
        self.closed += 1
        tf.cp.offset = tf.read_pos - len(tf.partial)
        if forget:
            self._forget.append(tf.cp.key)  # dropped from the checkpoints once this output is spooled
        _log.debug("closed %s (%s)", tf.cp.path, "deleted" if forget else "idle")

    # -- checkpoints --------------------------------------------------------------------------------
    def snapshot(self) -> None:
        """Called after the output produced so far is durably spooled: advance the checkpoints."""
        for tf in self.files.values():
            tf.cp.offset = tf.committed
        forget, self._forget = self._forget, []
        for key in forget:
            if key not in self.files:
                self.cps.entries.pop(key, None)

    def lags(self) -> dict[str, int]:
        return {tf.cp.path: max(0, tf.size - tf.committed) for tf in self.files.values()}

    def close_all(self) -> None:
        for tf in list(self.files.values()):
            os.close(tf.fd)
        self.files.clear()

"""File tailing: discovery by glob, identity, rotation, truncation, partial lines.

Identity of a file = (st_dev, st_ino) + a hash of its head (the first line, at most 256 bytes;
nothing is read from a file before it has a complete first line or 256 bytes). The inode pair
follows a file through renames; the head hash tells a reused inode from its predecessor.

- Rename rotation: the open fd keeps being read to EOF; a file that left the globs (or was
  deleted) is closed once idle at EOF for `close_removed_after_ms`; its last line is emitted
  even without a trailing newline at that moment (nothing will complete it any more).
- copytruncate: size < read position, or (checked at every read, so a lagging agent never takes
  new content for the rest of the old) a different first line -> the generation is bumped (new
  event ids) and reading restarts at 0. The generation that ended is remembered
  (`CheckpointStore.ended`).
- Copies (logrotate copytruncate's `app.log.1`, a new inode holding bytes already read): a new
  file whose first bytes hash like the first bytes of a file read up to at least there (up to
  4 KiB, `sig`) is read from where that file's reading stopped, as Vector's checksum fingerprint
  does. While the original is still live and holds the copy's bytes (copied, not yet truncated),
  the copy waits: the original's own reading covers it. Lines the agent had not read at truncate
  time are read from the copy, so nothing is lost and nothing is shipped twice; only lines
  written between logrotate's copy and its truncate exist nowhere (true of every tailer). A
  copy's lines get the original's event ids (same uid, same offsets): lines read from the
  original but not yet checkpointed when the agent was killed are deduplicated by the hub.
- Partial last line: held in memory (at most `max_line_bytes`) until its newline arrives; the
  checkpoint stays at its start, so a restart reads it again whole.
- Rotation while the agent is down: at start, checkpointed files no glob finds are looked up
  by inode in their old directory (app.log -> app.log.1) and finished before being dropped.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import stat as stat_mod
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import NamedTuple

from ..checkpoints import Checkpoint, CheckpointStore, Ended
from ..config import AgentConfig, InputConfig
from ..parse import FileEncoder, TimestampParser
from .identity import SIG as _SIG
from .identity import file_uid, fp_of, head_fp, same_bytes
from .identity import sig as signature

__all__ = ["FileSource", "TailedFile", "file_uid"]

_log = logging.getLogger("obshub_agent.sources.file")
_DEFER = (-1, "")  # _copy_start: the original still covers this copy, decide at the next discovery


class Found(NamedTuple):
    path: str
    st: os.stat_result
    inp: InputConfig


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
    head: bytearray = field(default_factory=bytearray)  # bytes [0, min(read_pos, _SIG)): its sig, kept
    # in memory because a truncated file's old start can no longer be read back

    @property
    def committed(self) -> int:
        """Everything before this offset has been handed over as events."""
        pend = self.encoder.pending_offset
        return pend if pend is not None else self.read_pos - len(self.partial)

    def sign(self, offset: int) -> None:
        """Record in the checkpoint the hash of what a copy read up to `offset` starts with."""
        n = min(offset, len(self.head))
        if n != self.cp.sig_len and n >= self.cp.fp_len:
            self.cp.sig, self.cp.sig_len = signature(self.head[:n]), n


class FileSource:
    def __init__(
        self, cfg: AgentConfig, checkpoints: CheckpointStore, *, clock: Callable[[], float] = time.time
    ) -> None:
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
        self.copies = 0  # new files recognised as copies of files already read
        self._deferred: set[str] = set()  # copies waiting for their original (logged once)
        self.changed = False  # files opened, closed or ended since the last snapshot
        self.opened = 0
        self.closed = 0

    def reconfigure(self, cfg: AgentConfig, out: list[bytes]) -> None:
        """SIGHUP: new inputs apply to files opened from now on; offsets are kept."""
        self.cfg = cfg
        self._ts = {id(i): TimestampParser(i.ts_format, cfg.timezone) for i in cfg.inputs}
        for tf in list(self.files.values()):
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

    def _scan(self) -> dict[str, Found]:
        """Regular files the globs match now, by "dev:ino" (the first input matching wins)."""
        found: dict[str, Found] = {}
        for inp in self.cfg.inputs:
            for pattern in inp.paths:
                for path in sorted(glob.glob(pattern)):
                    if any(fnmatch(path, x) for x in inp.exclude):
                        continue
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    if stat_mod.S_ISREG(st.st_mode):
                        found.setdefault(f"{st.st_dev}:{st.st_ino}", Found(path, st, inp))
        return found

    def discover(self, out: list[bytes]) -> None:
        now = time.monotonic()
        found = self._scan()
        seen = set(found)
        self._deferred &= seen
        new: list[Found] = []
        for key, f in found.items():
            tf = self.files.get(key)
            if tf is not None:
                tf.gone_since = None
                tf.cp.seen = time.time()
                continue
            cp = self.cps.entries.get(key)
            if cp is None:
                new.append(f)  # maybe a copy: decided once the known files are open
                continue
            if cp.fp is not None and f.st.st_size == cp.offset:
                cp.seen = time.time()
                continue  # closed as inactive and unchanged: do not reopen
            self._open(f.path, f.st, f.inp, out=out, found=found)
        for f in new:
            self._open(f.path, f.st, f.inp, out=out, found=found)
        if self._first_discovery:
            self._first_discovery = False
            self._recover_rotated(found, out)
        for key, tf in self.files.items():
            if key not in seen and tf.gone_since is None:
                tf.gone_since = now
                self.rotations += 1

    def _recover_rotated(self, found: dict[str, Found], out: list[bytes]) -> None:
        """Files checkpointed but not found: renamed while the agent was down? Finish them."""
        by_dir: dict[str, list[Checkpoint]] = {}
        for key, cp in self.cps.entries.items():
            if key not in found and key not in self.files and cp.fp is not None:
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
                _log.info(
                    "finishing %s (was %s, rotated while the agent was down) from offset %d",
                    de.path,
                    old.path,
                    old.offset,
                )
                tf = self._open(de.path, st, inp, keep_path=old.path, out=out, found=found)
                if tf is not None:
                    tf.gone_since = time.monotonic()

    def _encoder(self, inp: InputConfig, cp: Checkpoint) -> FileEncoder:
        return FileEncoder(
            inp, host=self.cfg.host, uid=self._uid(cp), path=cp.path, ts=self._ts[id(inp)], clock=self._clock
        )

    def _open(
        self,
        path: str,
        st: os.stat_result,
        inp: InputConfig,
        keep_path: str | None = None,
        *,
        out: list[bytes],
        found: dict[str, Found],
    ) -> TailedFile | None:
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
        head = head_fp(fd)
        if head is None:  # no complete first line yet: identify it later
            os.close(fd)
            return None
        fp, fp_len = head
        cp = self.cps.entries.get(key)
        reused = cp is not None and cp.fp is not None and fp_of(fd, cp.fp_len) != cp.fp
        if cp is None or reused:
            offset, uid = 0, None
            if cp is None and inp.start_at == "end" and self._first_discovery:
                offset = fst.st_size  # existing backlog skipped by request; lines after it are read
            else:
                start = self._copy_start(fd, fst.st_size, fp, key, path, out, found)
                if start == _DEFER:
                    os.close(fd)
                    return None
                if start is not None:
                    offset, uid = start
            if cp is None:
                cp = Checkpoint(
                    path=path,
                    dev=fst.st_dev,
                    ino=fst.st_ino,
                    fp=fp,
                    fp_len=fp_len,
                    gen=0,
                    offset=offset,
                    seen=time.time(),
                    uid=uid,
                )
                self.cps.entries[key] = cp
            else:
                _log.info(
                    "%s: inode %s now holds different content (reused inode or rewritten file): "
                    "reading it as a new file from offset %d",
                    path,
                    key,
                    offset,
                )
                self._ended(cp, cp.offset)
                cp.fp, cp.fp_len, cp.gen, cp.offset, cp.path = fp, fp_len, cp.gen + 1, offset, path
                cp.sig, cp.sig_len, cp.uid = None, 0, uid
        elif cp.fp is None:  # truncated earlier: adopt the new head with the already bumped generation
            cp.fp, cp.fp_len = fp, fp_len
        elif fst.st_size < cp.offset:
            _log.info(
                "%s: truncated while the agent was down (size %d < offset %d): reading from the start",
                path,
                fst.st_size,
                cp.offset,
            )
            self.truncations += 1
            self._ended(cp, cp.offset)
            cp.gen, cp.offset, cp.sig, cp.sig_len, cp.uid = cp.gen + 1, 0, None, 0, None
        if keep_path:
            cp.path = keep_path  # attrs.file keeps the name the file was discovered under
        cp.seen = time.time()
        tf = TailedFile(
            fd=fd,
            cp=cp,
            input=inp,
            encoder=self._encoder(inp, cp),
            read_pos=cp.offset,
            size=fst.st_size,
            head=bytearray(os.pread(fd, min(cp.offset, _SIG), 0)),
        )
        self.files[key] = tf
        self.opened += 1
        self.changed = True
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
                if not self._same_start(tf):
                    # truncated and rewritten past our position since the last check (a lagging
                    # agent): `data` may be the new content's. End the old generation here; a copy
                    # has what it held beyond (copytruncate), the new content is read from 0.
                    self._truncated(tf, os.fstat(tf.fd).st_size, out)
                    continue
                if len(tf.head) == tf.read_pos < _SIG:
                    tf.head += data[: _SIG - tf.read_pos]
                tf.read_pos += len(data)
                tf.last_data = time.monotonic()
                total += len(data)
                self.lines_read += data.count(b"\n")
                self._consume(tf, data, out)
        self.lines_bytes += total
        return total

    @staticmethod
    def _same_start(tf: TailedFile) -> bool:
        """The file still starts with the first line it was identified by (one small pread)."""
        n = tf.cp.fp_len
        if len(tf.head) >= n:
            return os.pread(tf.fd, n, 0) == tf.head[:n]
        return fp_of(tf.fd, n) == tf.cp.fp

    def _consume(self, tf: TailedFile, data: bytes, out: list[bytes]) -> None:
        maxlen = self.cfg.max_line_bytes
        if tf.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return
            tf.skipping = False
            data = data[nl + 1 :]
            tf.partial = b""
            if not data:
                return
        buf = tf.partial + data if tf.partial else data
        base = tf.read_pos - len(buf)  # file offset of buf[0]
        nl = buf.rfind(b"\n")
        if nl < 0:
            tf.partial = buf
        else:
            tf.partial = buf[nl + 1 :]
            tf.encoder.feed(buf[: nl + 1] if nl + 1 < len(buf) else buf, base, out)
        if len(tf.partial) > maxlen:
            # an over-long line: ship its first max_line_bytes, drop the rest up to its newline
            cut = tf.partial[:maxlen]
            tf.encoder.feed(cut + b"\n", tf.read_pos - len(tf.partial), out)
            _log.warning(
                "%s: line at offset %d longer than max_line_bytes=%d: truncated",
                tf.cp.path,
                tf.read_pos - len(tf.partial),
                maxlen,
            )
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
                if st.st_size < tf.read_pos or (tf.cp.fp is not None and fp_of(tf.fd, tf.cp.fp_len) != tf.cp.fp):
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

    def _truncated(self, tf: TailedFile, size: int, out: list[bytes], found: dict[str, Found] | None = None) -> int:
        """End the file's generation; returns the offset a copy of it is to be read from."""
        _log.info(
            "%s: truncated (size %d < read position %d; copytruncate?): reading from the start",
            tf.cp.path,
            size,
            tf.read_pos,
        )
        self.truncations += 1
        tf.encoder.flush(out)
        end = tf.read_pos
        if tf.partial and not tf.skipping:
            if self._copy_holds(tf, self._scan() if found is None else found):
                end -= len(tf.partial)  # the copy has the whole line: it is read from there
            else:  # the rest of the line is gone with the truncation: ship what was written
                tf.encoder.feed(tf.partial + b"\n", tf.read_pos - len(tf.partial), out)
        cp = tf.cp
        tf.sign(end)
        self._ended(cp, end, bytes(tf.head))
        os.close(tf.fd)
        del self.files[cp.key]
        self.closed += 1
        self.changed = True
        # the next open adopts the new head under the next generation, from offset 0
        cp.fp, cp.gen, cp.offset, cp.sig, cp.sig_len, cp.uid = None, cp.gen + 1, 0, None, 0, None
        return end

    # -- copies (copytruncate) -------------------------------------------------------------------
    def _uid(self, cp: Checkpoint) -> str:
        assert cp.fp is not None
        return cp.uid or file_uid(self.cfg.host, cp.dev, cp.ino, cp.fp, cp.gen)

    def _ended(self, cp: Checkpoint, offset: int, head: bytes = b"") -> None:
        """Remember a generation that is gone, so a copy of it is not read again (up to `offset`)."""
        if cp.fp is not None and cp.sig is not None and cp.sig_len <= offset:
            self.cps.ended.append(
                Ended(
                    path=cp.path,
                    fp=cp.fp,
                    fp_len=cp.fp_len,
                    sig=cp.sig,
                    sig_len=cp.sig_len,
                    offset=offset,
                    seen=time.time(),
                    uid=self._uid(cp),
                    head=head[: min(offset, _SIG)],
                )
            )

    def _copy_holds(self, tf: TailedFile, found: dict[str, Found]) -> bool:
        """Does a file discovery will take for a copy (not read yet: no checkpoint, or one of a
        deleted file whose inode it reuses) hold `tf`'s start and its partial last line?"""
        at = tf.read_pos - len(tf.partial)
        for key, f in found.items():
            if key in self.files or f.st.st_size < tf.read_pos:
                continue
            try:
                fd = os.open(f.path, os.O_RDONLY)
            except OSError:
                continue
            try:
                cp = self.cps.entries.get(key)
                if cp is not None and (cp.fp is None or fp_of(fd, cp.fp_len) == cp.fp):
                    continue  # a file known as itself
                if os.pread(fd, len(tf.head), 0) == tf.head and os.pread(fd, len(tf.partial), at) == tf.partial:
                    return True
            finally:
                os.close(fd)
        return False

    def _copy_start(
        self, fd: int, size: int, fp: str, key: str, path: str, out: list[bytes], found: dict[str, Found]
    ) -> tuple[int, str] | None:
        """Where to start a file never read before: None if it is new content; if it is a copy,
        the offset up to which its bytes were already read as another file and that file's uid
        (the copy's lines get the ids the original's would have had); _DEFER while that other
        file is live and still holds these bytes (copied, not yet truncated): its own reading
        covers them, and where it stops is known only once it ends."""
        head = os.pread(fd, _SIG, 0)

        def starts_with(known: bytes | bytearray, sig: str | None, sig_len: int, fp_len: int) -> bool:
            """Our first bytes are the other file's: compared as bytes while they are in memory
            (then a copy shorter than the known start matches too), else by hash."""
            if known:
                n = min(len(known), size)
                return n >= fp_len and head[:n] == known[:n]
            return sig is not None and len(head) >= sig_len and signature(head[:sig_len]) == sig

        start: tuple[int, str] | None = None
        for other, cp in list(self.cps.entries.items()):
            if other == key or cp.fp != fp:
                continue
            tf = self.files.get(other)
            if tf is not None:  # open
                if not starts_with(tf.head, None, 0, cp.fp_len):
                    continue
                st = os.fstat(tf.fd)
                if st.st_size < tf.read_pos or fp_of(tf.fd, cp.fp_len) != cp.fp:
                    # truncated, not noticed yet: end it now (-> an `ended` record, matched below)
                    self._truncated(tf, st.st_size, out, found)
                elif st.st_size >= size and same_bytes(fd, tf.fd, size):
                    return self._defer(key, path, cp.path)
                continue  # else: same start, other content: a new file
            f = found.get(other)
            ofd = -1
            if f is not None:
                with contextlib.suppress(OSError):
                    ofd = os.open(f.path, os.O_RDONLY)
            try:
                live = False
                if ofd >= 0:
                    ost = os.fstat(ofd)
                    live = (
                        f"{ost.st_dev}:{ost.st_ino}" == other
                        and ost.st_size >= cp.offset
                        and fp_of(ofd, cp.fp_len) == cp.fp
                    )
                if live:  # closed while idle, unchanged: compare with its bytes
                    if (
                        ost.st_size >= size
                        and head[: min(size, _SIG)] == os.pread(ofd, min(size, _SIG), 0)
                        and same_bytes(fd, ofd, size)
                    ):
                        return self._defer(key, path, cp.path)
                elif starts_with(b"", cp.sig, cp.sig_len, cp.fp_len):
                    # gone from the globs, or truncated while closed: what was read of it is final
                    start = max(start or (0, ""), (min(cp.offset, size), self._uid(cp)))
            finally:
                if ofd >= 0:
                    os.close(ofd)
        for e in self.cps.ended:
            if e.fp == fp and starts_with(e.head, e.sig, e.sig_len, e.fp_len):
                start = max(start or (0, ""), (min(e.offset, size), e.uid))
        if start is not None:
            self.copies += 1
            self._deferred.discard(key)
            _log.info(
                "%s: a copy of a file already read up to offset %d (copytruncate?): reading it from there",
                path,
                start[0],
            )
        return start

    def _defer(self, key: str, path: str, original: str) -> tuple[int, str]:
        if key not in self._deferred:
            self._deferred.add(key)
            _log.info("%s: a copy of %s, which is still being read: waiting for that file to end", path, original)
        return _DEFER

    def _close(self, tf: TailedFile, out: list[bytes], *, emit_partial: bool, forget: bool) -> None:
        tf.encoder.flush(out)
        if emit_partial and tf.partial and not tf.skipping:
            tf.encoder.feed(tf.partial + b"\n", tf.read_pos - len(tf.partial), out)
            tf.partial = b""
        os.close(tf.fd)
        del self.files[tf.cp.key]
        self.closed += 1
        self.changed = True
        tf.cp.offset = tf.read_pos - len(tf.partial)
        tf.sign(tf.cp.offset)
        if forget:
            self._ended(tf.cp, tf.cp.offset, bytes(tf.head))
            self._forget.append(tf.cp.key)  # dropped from the checkpoints once this output is spooled
        _log.debug("closed %s (%s)", tf.cp.path, "deleted" if forget else "idle")

    # -- checkpoints --------------------------------------------------------------------------------
    def snapshot(self) -> None:
        """Called after the output produced so far is durably spooled: advance the checkpoints."""
        self.changed = False
        for tf in self.files.values():
            tf.cp.offset = tf.committed
            tf.sign(tf.cp.offset)
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

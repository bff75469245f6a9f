"""Disk spool: append-only segments of checksummed records, released only on hub ack.

Layout of `<state_dir>/spool/`:

    0000000000000001.seg   records: b"OHS1" | u32 length | u32 crc32(payload) | payload
    0000000000000002.seg   payload = NDJSON events, each line ending in b"\\n"
    ack.json               {"seq": N, "off": BYTES}: everything before it is stored by the hub

The reader thread appends (and fsyncs) a record, then advances the file checkpoints; the
shipper reads records from the ack cursor onward and moves the cursor after a 2xx. Segments
wholly before the cursor are deleted. A restart always opens a fresh segment, so a record torn
by a crash stays at the end of a sealed segment, where the checksum finds it (its lines were
never checkpointed, so they are read again from the files).

Bounds: bytes on disk <= spool_max_bytes + one record (the cap is checked before each append;
when it is reached `append` blocks: backpressure on reading, counted in metrics). Memory: the
shipper holds one batch; the writer holds one record.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .._atomic import atomic_write, fsync_dir

__all__ = ["Batch", "Spool"]

_log = logging.getLogger("obshub_agent.spool")
_MAGIC = b"OHS1"
_HDR = struct.Struct("<4sII")
_MAX_RECORD = 64 << 20  # sanity bound when reading a header: a bigger length means corruption


@dataclass
class Batch:
    payload: bytes  # NDJSON, lines end in b"\n"
    end: tuple[int, int]  # cursor after the last record of the batch
    records: int
    lines: int = field(default=0)


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int, fsync: bool = True) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._cond = threading.Condition()
        # metrics
        self.corrupt_records = 0
        self.blocked_seconds = 0.0
        self.blocked_count = 0
        self.blocked = False
        self.records_written = 0
        self.bytes_written = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ack_path = self.dir / "ack.json"
        self._ack = self._load_ack()
        segs = self._segments()
        for s in segs:
            if s < self._ack[0]:
                (self.dir / _name(s)).unlink()
        segs = [s for s in segs if s >= self._ack[0]]
        if segs and self._ack[0] < segs[0]:
            self._ack = (segs[0], 0)
        self._sizes: dict[int, int] = {s: (self.dir / _name(s)).stat().st_size for s in segs}
        self._bytes = sum(self._sizes.values())
        # a fresh segment per start: never append after a possibly torn record
        self._wseq = (segs[-1] + 1) if segs else max(self._ack[0], 1)
        self._wfd = self._open_segment(self._wseq)
        self._woff = 0
        if not segs:
            self._ack = (self._wseq, 0)
        # shipper's read cursor (in memory; starts at the durable ack cursor)
        self._rseq, self._roff = self._ack
        self._rfd: int | None = None
        self._rfd_seq = -1
        self._closed = False

    # -- bookkeeping -----------------------------------------------------------------------------
    def _segments(self) -> list[int]:
        out = []
        for p in self.dir.iterdir():
            if p.suffix == ".seg" and p.stem.isdigit():
                out.append(int(p.stem))
        return sorted(out)

    def _load_ack(self) -> tuple[int, int]:
        try:
            doc = json.loads(self._ack_path.read_bytes())
            return int(doc["seq"]), int(doc["off"])
        except FileNotFoundError:
            return (0, 0)
        except (ValueError, KeyError, TypeError) as exc:
            aside = self._ack_path.with_name(f"ack.json.corrupt-{int(time.time())}")
            os.replace(self._ack_path, aside)
            _log.error(
                "spool ack file corrupt (%s): moved to %s; the whole spool will be re-sent "
                "(the hub drops duplicates by id)",
                exc,
                aside,
            )
            return (0, 0)

    def _open_segment(self, seq: int) -> int:
        fd = os.open(self.dir / _name(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self.fsync:
            fsync_dir(self.dir)
        self._sizes.setdefault(seq, 0)
        return fd

    @property
    def disk_bytes(self) -> int:
        """Bytes of segments on disk (acked space is returned a segment at a time)."""
        return self._bytes

    @property
    def unacked_bytes(self) -> int:
        with self._cond:
            total = 0
            for s, size in self._sizes.items():
                if s > self._ack[0]:
                    total += size
                elif s == self._ack[0]:
                    total += size - self._ack[1]
            return total

    # -- writer side (reader thread) ---------------------------------------------------------------
    def append(self, payload: bytes, stop: threading.Event | None = None) -> bool:
        """Append one record durably. Blocks while the spool is full; False if `stop` was set meanwhile."""
        hdr = _HDR.pack(_MAGIC, len(payload), zlib.crc32(payload))
        size = len(hdr) + len(payload)
        with self._cond:
            if self._bytes + size > self.max_bytes and self._has_unacked():
                self.blocked = True
                self.blocked_count += 1
                t0 = time.monotonic()
                while self._bytes + size > self.max_bytes and self._has_unacked():
                    if stop is not None and stop.is_set():
                        self.blocked_seconds += time.monotonic() - t0
                        self.blocked = False
                        return False
                    self._cond.wait(0.2)
                self.blocked_seconds += time.monotonic() - t0
                self.blocked = False
            if self._woff and self._woff + size > self.segment_bytes:
                self._seal_locked()
        # write + fsync outside the lock: the shipper keeps reading sealed data meanwhile
        written = os.writev(self._wfd, [hdr, payload])  # no copy of the payload
        if written < size:  # short write (rare: signals, full disk): finish it
            rest = memoryview(hdr + payload)[written:]
            while rest:
                rest = rest[os.write(self._wfd, rest) :]
        if self.fsync:
            os.fsync(self._wfd)
        with self._cond:
            self._woff += size
            self._sizes[self._wseq] = self._woff
            self._bytes += size
            self.records_written += 1
            self.bytes_written += len(payload)
            self._cond.notify_all()
        return True

    def _has_unacked(self) -> bool:
        return (self._rseq, self._roff) != (self._wseq, self._woff) or self._ack != (self._wseq, self._woff)

    def _seal_locked(self) -> None:
        os.close(self._wfd)
        self._wseq += 1
        self._woff = 0
        self._wfd = self._open_segment(self._wseq)

    # -- reader side (shipper thread) ----------------------------------------------------------------
    def read_batch(self, max_bytes: int, timeout: float) -> Batch | None:
        """Records from the read cursor on, up to `max_bytes` (at least one record). None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._rseq, self._roff) == (self._wseq, self._woff):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._cond.wait(left)
        parts: list[bytes] = []
        size = 0
        records = 0
        while size < max_bytes:
            with self._cond:
                wseq, woff = self._wseq, self._woff
            seq, off = self._rseq, self._roff
            if (seq, off) == (wseq, woff):
                break
            limit = woff if seq == wseq else self._sizes.get(seq, 0)
            if off >= limit:
                if seq < wseq:
                    self._rseq, self._roff = self._next_seq(seq), 0
                    continue
                break
            payload, new_off = self._read_record(seq, off, limit)
            if payload is None:  # corrupt: skip the rest of this sealed segment
                self._rseq, self._roff = (seq, limit) if seq == wseq else (self._next_seq(seq), 0)
                continue
            if parts and size + len(payload) > max_bytes:
                break
            parts.append(payload)
            size += len(payload)
            records += 1
            self._rseq, self._roff = seq, new_off
            if new_off >= limit and seq < wseq:
                self._rseq, self._roff = self._next_seq(seq), 0
        if not parts:
            if (self._rseq, self._roff) != self._ack:  # only corrupt records were skipped: ack past them
                return Batch(b"", (self._rseq, self._roff), 0)
            return None
        return Batch(b"".join(parts), (self._rseq, self._roff), records)

    def _next_seq(self, seq: int) -> int:
        with self._cond:
            later = [s for s in self._sizes if s > seq]
        return min(later) if later else seq + 1

    def _read_record(self, seq: int, off: int, limit: int) -> tuple[bytes | None, int]:
        if self._rfd_seq != seq:
            if self._rfd is not None:
                os.close(self._rfd)
            self._rfd = os.open(self.dir / _name(seq), os.O_RDONLY)
            self._rfd_seq = seq
        assert self._rfd is not None
        hdr = os.pread(self._rfd, _HDR.size, off)
        bad = None
        if len(hdr) < _HDR.size:
            bad = "torn header"
        else:
            magic, length, crc = _HDR.unpack(hdr)
            if magic != _MAGIC or length > _MAX_RECORD or off + _HDR.size + length > limit:
                bad = "bad header"
            else:
                payload = os.pread(self._rfd, length, off + _HDR.size)
                if len(payload) == length and zlib.crc32(payload) == crc:
                    return payload, off + _HDR.size + length
                bad = "checksum mismatch"
        self.corrupt_records += 1
        _log.error(
            "spool segment %s: %s at offset %d; skipping %d bytes to the end of the segment "
            "(a record torn by a crash: its lines are re-read from the files)",
            _name(seq),
            bad,
            off,
            limit - off,
        )
        return None, limit

    def rewind(self) -> None:
        """Restart reading at the ack cursor (after a failed send the batch is read again)."""
        self._rseq, self._roff = self._ack

    def ack(self, end: tuple[int, int]) -> None:
        """The hub stored everything before `end`: persist the cursor, free whole segments."""
        atomic_write(self._ack_path, json.dumps({"seq": end[0], "off": end[1]}).encode(), durable=self.fsync)
        with self._cond:
            self._ack = end
            for s in [s for s in self._sizes if s < end[0]]:
                if self._rfd_seq == s and self._rfd is not None:
                    os.close(self._rfd)
                    self._rfd, self._rfd_seq = None, -1
                (self.dir / _name(s)).unlink(missing_ok=True)
                self._bytes -= self._sizes.pop(s)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            os.close(self._wfd)
            if self._rfd is not None:
                os.close(self._rfd)
                self._rfd = None
        # an empty last segment is left behind; the next start deletes it once acked past


def _name(seq: int) -> str:
    return f"{seq:016d}.seg"

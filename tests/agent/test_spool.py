"""Disk spool: ordering, ack, restart, checksums, torn records, the cap."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from obshub_agent.spool import Spool


def _spool(d: Path, **kw: int) -> Spool:
    return Spool(d, max_bytes=kw.get("max_bytes", 1 << 20), segment_bytes=kw.get("segment_bytes", 4096))


def _drain(sp: Spool, ack: bool = True) -> list[bytes]:
    lines: list[bytes] = []
    while (b := sp.read_batch(3000, timeout=0.01)) is not None:
        lines += b.payload.splitlines()
        if ack:
            sp.ack(b.end)
    return lines


def test_order_ack_and_segment_cleanup(tmp_path: Path) -> None:
    sp = _spool(tmp_path, segment_bytes=1024)
    for i in range(100):
        sp.append(b"".join(b'{"n":%d}\n' % (i * 10 + j) for j in range(10)))
    assert len(list(tmp_path.glob("*.seg"))) > 5
    assert _drain(sp) == [b'{"n":%d}' % i for i in range(1000)]
    assert sp.unacked_bytes == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # only the segment being written remains
    sp.close()


def test_unacked_records_survive_restart(tmp_path: Path) -> None:
    sp = _spool(tmp_path)
    for i in range(20):
        sp.append(b"rec %d\n" % i)
    b = sp.read_batch(30, timeout=0.1)  # a few records, acked
    assert b is not None
    sp.ack(b.end)
    acked = b.payload.splitlines()
    b2 = sp.read_batch(30, timeout=0.1)  # read but never acked (hub answer lost)
    assert b2 is not None
    sp.close()
    sp = _spool(tmp_path)
    rest = _drain(sp)
    assert acked + rest == [b"rec %d" % i for i in range(20)]
    sp.close()


def test_torn_and_corrupt_records_are_detected(tmp_path: Path) -> None:
    sp = _spool(tmp_path, segment_bytes=1 << 20)
    for i in range(5):
        sp.append(b"good %d\n" % i)
    sp.close()
    seg = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF  # flip a bit in the last record's payload
    seg.write_bytes(bytes(data) + b"OHS1\x10\x00")  # plus a torn header, as a crash mid-write leaves
    sp = _spool(tmp_path)
    sp.append(b"after restart\n")
    assert _drain(sp) == [b"good 0", b"good 1", b"good 2", b"good 3", b"after restart"]
    assert sp.corrupt_records == 1
    sp.close()


def test_cap_blocks_writer_until_ack(tmp_path: Path) -> None:
    sp = _spool(tmp_path, max_bytes=8192, segment_bytes=2048)
    rec = b"x" * 1000 + b"\n"
    for _ in range(7):
        assert sp.append(rec)
    done = threading.Event()

    def writer() -> None:
        for _ in range(5):
            sp.append(rec)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.3)
    assert not done.is_set() and sp.blocked  # backpressure: the writer waits, nothing dropped
    assert sp.disk_bytes <= 8192 + len(rec) + 12
    got = _drain(sp)
    t.join(5)
    got += _drain(sp)
    assert done.is_set() and len(got) == 12
    assert sp.blocked_count >= 1 and sp.blocked_seconds > 0.2
    sp.close()


def test_blocked_append_returns_false_on_stop(tmp_path: Path) -> None:
    sp = _spool(tmp_path, max_bytes=4096, segment_bytes=1024)
    stop = threading.Event()
    while sp.disk_bytes + 520 <= 4096:
        assert sp.append(b"y" * 500 + b"\n", stop)
    stop.set()
    assert sp.append(b"z" * 500 + b"\n", stop) is False
    sp.close()

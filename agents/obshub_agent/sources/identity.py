"""How the tailer knows a file (sources/file.py): its uid (host, inode, head hash, truncation
generation: the root of every event id it ships), the hash of its head, and the signature of its
first bytes that recognises a copytruncate copy as already read."""

from __future__ import annotations

import hashlib
import os

__all__ = ["HEAD", "SIG", "file_uid", "fp_of", "head_fp", "same_bytes", "sig"]

HEAD = 256  # bytes hashed at most to identify a file
SIG = 4096  # bytes of a file's start a copy must match: ~15 SDK lines, timestamps make them unique


def file_uid(host: str, dev: int, ino: int, fp: str, gen: int) -> str:
    """Stable per (host, file, truncation generation); event id = f"{uid}-{offset:x}". Version 1."""
    return hashlib.blake2b(f"v1|{host}|{dev}|{ino}|{fp}|{gen}".encode(), digest_size=10).hexdigest()


def head_fp(fd: int) -> tuple[str, int] | None:
    head = os.pread(fd, HEAD, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        n = nl + 1
    elif len(head) >= HEAD:
        n = HEAD
    else:
        return None
    return hashlib.blake2b(head[:n], digest_size=8).hexdigest(), n


def fp_of(fd: int, n: int) -> str | None:
    head = os.pread(fd, n, 0)
    return hashlib.blake2b(head, digest_size=8).hexdigest() if len(head) == n else None


def sig(data: bytes | bytearray) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def same_bytes(fd_a: int, fd_b: int, end: int) -> bool:
    """The SIG bytes before `end` are equal in both files (the start is compared by `sig`)."""
    start = max(0, end - SIG)
    a = os.pread(fd_a, end - start, start)
    return len(a) == end - start and a == os.pread(fd_b, end - start, start)

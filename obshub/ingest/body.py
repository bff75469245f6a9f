"""Request bodies: read with a wire-size cap and a deadline, decode with a decoded-size cap.

Both caps matter: the wire cap stops a client from filling memory with a huge upload; the
decoded cap stops a decompression bomb (1 MiB of gzip can inflate to 1 GiB, of zstd to far
more). Decoders here stop producing output one byte past the cap, so a bomb costs at most
`max_decoded` bytes of memory before the 413.

The deadline stops a slow sender from holding what it was given (a connection, an admission
slot) for as long as it likes: the body must arrive within `body_timeout_s`, plus 1 s for every
`min_body_rate` bytes received (Apache mod_reqtimeout's rule: a big body on a slow link gets
its time, a trickle of 1 byte/s is cut after `body_timeout_s`). A late body is a 408.

Decoding is linear in the body: one decoder per body, fed the wire bytes in order, each byte
at most twice. A body of many gzip members or zstd frames (RFC 1952 and zstd allow
concatenation) once re-copied the rest of the body for each one: 116,508 empty zstd frames cost
5.8 s of CPU; now ~0.06 s.
"""

from __future__ import annotations

import asyncio
import io
import zlib
from collections.abc import Sequence

import brotli
import zstandard
from starlette.requests import ClientDisconnect, Request

from obshub.errors import BodyError

__all__ = ["HEAD_BYTES", "BodyReader", "decode"]

# How much of a body the hub reads and decodes before it knows who sent it (a Sentry envelope
# whose key is only in its header line's `dsn`): that line is ~200-1,000 bytes (event_id, dsn,
# sdk, sent_at, trace context), so 64 KiB as sent and decoded is plenty.
HEAD_BYTES = 64 * 1024
ENCODINGS = ("identity", "gzip", "zstd")


class BodyReader:
    """One request's body, read from the ASGI channel with the wire cap and the deadline. It
    can read the first line first (`first_line`, before authentication) and the rest later
    (`read`): the bytes already read are kept."""

    def __init__(self, request: Request, max_wire: int, timeout_s: float, min_rate: int) -> None:
        self.request = request
        self.max_wire = max_wire
        self.timeout_s = timeout_s  # 0: no deadline
        self.min_rate = min_rate  # bytes per extra second; 0: none
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False  # the client sent its whole body (and the hub read it)
        self.started = asyncio.get_running_loop().time()

    def _check_length(self) -> None:
        length = self.request.headers.get("content-length")
        if length is not None:
            # Digits only by now: uvicorn's parsers (httptools, h11) answer 400 themselves to any
            # other Content-Length (`abc`, `+5`, `5_0`, 20+ digits), before the app sees the request.
            n = int(length)
            if n > self.max_wire:
                raise BodyError(413, f"body of {n} bytes exceeds the limit of {self.max_wire} bytes")

    def _deadline(self) -> float | None:
        if self.timeout_s <= 0:
            return None
        extra = self.size / self.min_rate if self.min_rate > 0 else 0.0
        return self.started + self.timeout_s + extra

    def _too_slow(self) -> BodyError:
        rate = f", plus 1 s per {self.min_rate} bytes received" if self.min_rate > 0 else ""
        return BodyError(
            408, f"request body too slow: {self.size} bytes received in {self.timeout_s:g} s{rate}; send it faster"
        )

    async def _next(self) -> bytes:
        """The next chunk of the body (b"" at its end); 408 past the deadline, 413 past the cap."""
        deadline = self._deadline()
        try:
            async with asyncio.timeout_at(deadline):
                message = await self.request.receive()
        except TimeoutError:
            raise self._too_slow() from None
        if message["type"] != "http.request":  # http.disconnect: the client went away
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        self.size += len(chunk)
        if self.size > self.max_wire:
            raise BodyError(413, f"body exceeds the limit of {self.max_wire} bytes")
        if chunk:
            self.chunks.append(chunk)
        if not message.get("more_body", False):
            self.complete = True
        return chunk

    async def first_line(self, encoding: str | None, allowed: Sequence[str]) -> bytes | None:
        """The decoded body up to its first newline (all of it when it has none), reading and
        decoding at most HEAD_BYTES; None when that is not enough or the body does not decode."""
        self._check_length()
        try:
            decoder = _decoder(_encoding(encoding, allowed), HEAD_BYTES)
            seen = 0  # decoded bytes already searched: each is searched once
            while True:
                out = decoder.out
                if out.tell() > seen:
                    with out.getbuffer() as buf:
                        found = bytes(buf[seen:]).find(b"\n")
                    if found >= 0:
                        return out.getvalue()[: seen + found]
                    seen = out.tell()
                if self.complete:
                    decoder.end()
                    return out.getvalue()
                if self.size >= HEAD_BYTES:
                    return None
                decoder.feed(await self._next())
        except BodyError as e:
            if e.status == 408:
                raise
            return None

    async def read(self) -> bytes:
        """The whole body as sent: 413 over the wire cap (before reading when Content-Length
        says so), 408 past the deadline."""
        self._check_length()
        while not self.complete:
            await self._next()
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


# -- decoding ---------------------------------------------------------------------------------


def _too_big(limit: int) -> BodyError:
    return BodyError(413, f"decoded body exceeds the limit of {limit} bytes")


class _Decoder:
    """Identity: the bytes as sent, up to the cap. The others undo one Content-Encoding. Fed the
    body in order (`feed`), then `end` (400 when the stream stops midway); output in `out`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out = io.BytesIO()

    def _emit(self, data: bytes) -> None:
        self.out.write(data)
        if self.out.tell() > self.limit:
            raise _too_big(self.limit)

    def feed(self, data: bytes) -> None:
        self._emit(data)

    def end(self) -> None:
        pass


class _Zlib(_Decoder):
    """gzip (any number of members: RFC 1952 makes their concatenation one body), zlib-wrapped
    or raw deflate (one stream). The first member is fed 1 MiB slices (most bodies are one); a
    later one starts with 256-byte slices, doubling up to 1 MiB: a member's leftover slice
    (`unused_data`, a copy) is then at most twice what it consumed plus 256 bytes, so many tiny
    members cost linear time, a big one few calls."""

    def __init__(self, limit: int, wbits: int, members: bool) -> None:
        super().__init__(limit)
        self.wbits = wbits
        self.members = members
        self.d: zlib._Decompress | None = None  # the current member
        self.step = 1 << 20

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos, n = 0, len(view)
        while pos < n:
            if self.d is None or self.d.eof:
                if self.d is not None and not self.members:
                    return  # bytes after a deflate stream: ignored (as zlib itself does)
                if self.d is not None:
                    self.step = 256
                self.d = zlib.decompressobj(self.wbits)
            piece = view[pos : pos + self.step]
            try:
                # max_length >= 1 here (0 would mean no cap): `out` is never past `limit` yet.
                self._emit(self.d.decompress(piece, self.limit + 1 - self.out.tell()))
            except zlib.error as e:
                raise BodyError(400, f"invalid compressed body: {e}") from None
            if self.d.unconsumed_tail:  # output stopped at the cap with input left
                raise _too_big(self.limit)
            pos += len(piece) - len(self.d.unused_data) if self.d.eof else len(piece)
            self.step = min(self.step * 2, 1 << 20)

    def end(self) -> None:
        if self.d is not None and not self.d.eof:
            raise BodyError(400, "invalid compressed body: truncated stream")


class _Deflate(_Zlib):
    """HTTP "deflate" is meant to be zlib-wrapped (RFC 1950), but many clients send raw deflate:
    told apart by the zlib header (a raw stream's first byte never has CM=8 in its low nibble:
    that would be a stored block with non-zero padding)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit, 0, members=False)
        self.pending = b""

    def feed(self, data: bytes) -> None:
        if self.wbits == 0:
            self.pending += data
            if len(self.pending) < 2:
                return
            cmf, flg = self.pending[0], self.pending[1]
            self.wbits = 15 if cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0 else -15
            data, self.pending = self.pending, b""
        super().feed(data)

    def end(self) -> None:
        if self.pending:
            raise BodyError(400, "invalid compressed body: truncated stream")
        super().end()


class _Zstd(_Decoder):
    """Any number of frames. decompressobj has no output cap, so it is fed 256-byte slices: one
    slice holds at most ~64 RLE blocks of 128 KiB, so the overshoot past the cap is bounded
    (~8 MiB) before the 413. A frame's leftover slice is fed to the next frame's object."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.zd = zstandard.ZstdDecompressor()
        self.d = self.zd.decompressobj()
        self.in_frame = False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos, n = 0, len(view)
        try:
            while pos < n:
                if self.d.eof:
                    self.d = self.zd.decompressobj()
                piece = view[pos : pos + 256]
                self.in_frame = True
                self._emit(self.d.decompress(piece))
                if self.d.eof:
                    self.in_frame = False
                    pos += len(piece) - len(self.d.unused_data)
                else:
                    pos += len(piece)
        except zstandard.ZstdError as e:
            raise BodyError(400, f"invalid zstd body: {e}") from None

    def end(self) -> None:
        if self.in_frame:
            raise BodyError(400, "invalid zstd body: truncated stream")


class _Brotli(_Decoder):
    """One stream; output_buffer_limit caps each call's output, drained with empty input."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.d = brotli.Decompressor()

    def feed(self, data: bytes) -> None:
        try:
            chunk = self.d.process(data, output_buffer_limit=1 << 20)
            while True:
                self._emit(chunk)
                if self.d.is_finished() or self.d.can_accept_more_data():
                    return
                chunk = self.d.process(b"", output_buffer_limit=1 << 20)
        except brotli.error as e:
            raise BodyError(400, f"invalid brotli body: {e}") from None

    def end(self) -> None:
        if not self.d.is_finished():
            raise BodyError(400, "invalid brotli body: truncated stream")


def _encoding(encoding: str | None, allowed: Sequence[str]) -> str:
    enc = (encoding or "identity").strip().lower()
    if enc == "x-gzip":
        enc = "gzip"
    if enc not in allowed:
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r}; use one of {', '.join(allowed)}")
    return enc


def _decoder(enc: str, limit: int) -> _Decoder:
    if enc == "gzip":
        return _Zlib(limit, 31, members=True)
    if enc == "deflate":
        return _Deflate(limit)
    if enc == "br":
        return _Brotli(limit)
    if enc == "zstd":
        return _Zstd(limit)
    return _Decoder(limit)


def decode(body: bytes, encoding: str | None, max_decoded: int, allowed: Sequence[str] = ENCODINGS) -> bytes:
    """Undo Content-Encoding. Unknown or disallowed encodings are 415; corrupt data is 400."""
    enc = _encoding(encoding, allowed)
    if enc == "identity":  # no copy
        if len(body) > max_decoded:
            raise _too_big(max_decoded)
        return body
    d = _decoder(enc, max_decoded)
    d.feed(body)
    d.end()
    return d.out.getvalue()

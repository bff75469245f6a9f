"""Request bodies: read with a wire-size cap, decode with a decoded-size cap.

Both caps matter: the wire cap stops a slow client from filling memory with a huge upload; the
decoded cap stops a decompression bomb (1 MiB of gzip can inflate to 1 GiB, of zstd to far
more). Decoders here stop producing output one byte past the cap, so a bomb costs at most
`max_decoded` bytes of memory before the 413.
"""

from __future__ import annotations

import io
import zlib

import brotli
import zstandard
from starlette.requests import Request

from obshub.errors import BodyError

__all__ = ["decode", "read_body"]


async def read_body(request: Request, max_wire: int) -> bytes:
    """The raw body, refusing (413) anything over `max_wire` before reading it all."""
    length = request.headers.get("content-length")
    if length is not None:
        # Digits only by now: uvicorn's parsers (httptools, h11) answer 400 themselves to any
        # other Content-Length (`abc`, `+5`, `5_0`, 20+ digits), before the app sees the request.
        n = int(length)
        if n > max_wire:
            raise BodyError(413, f"body of {n} bytes exceeds the limit of {max_wire} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_wire:
            raise BodyError(413, f"body exceeds the limit of {max_wire} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(limit: int) -> BodyError:
    return BodyError(413, f"decoded body exceeds the limit of {limit} bytes")


def _zlib(body: bytes, wbits: int, limit: int) -> bytes:
    out = io.BytesIO()
    data = body
    while data:
        d = zlib.decompressobj(wbits)
        try:
            out.write(d.decompress(data, limit + 1 - out.tell()))
            if out.tell() > limit or d.unconsumed_tail:
                raise _too_big(limit)
            out.write(d.flush())
        except zlib.error as e:
            raise BodyError(400, f"invalid compressed body: {e}") from None
        if not d.eof:
            raise BodyError(400, "invalid compressed body: truncated stream")
        if out.tell() > limit:
            raise _too_big(limit)
        data = d.unused_data  # concatenated gzip members are one body (RFC 1952)
        if wbits != 31:
            break
    return out.getvalue()


def _deflate(body: bytes, limit: int) -> bytes:
    # HTTP "deflate" is meant to be zlib-wrapped, but many clients send raw deflate.
    try:
        return _zlib(body, 15, limit)
    except BodyError as e:
        if e.status == 413:
            raise
        return _zlib(body, -15, limit)


def _zstd(body: bytes, limit: int) -> bytes:
    # decompressobj has no output cap, so feed 256-byte slices: one slice holds at most ~64
    # RLE blocks of 128 KiB, so the overshoot past the cap is bounded (~8 MiB) before the 413.
    out = io.BytesIO()
    data = memoryview(body)
    try:
        while data:
            d = zstandard.ZstdDecompressor().decompressobj()
            i = 0
            while i < len(data) and not d.eof:
                out.write(d.decompress(data[i : i + 256]))
                i += 256
                if out.tell() > limit:
                    raise _too_big(limit)
            if not d.eof:
                raise BodyError(400, "invalid zstd body: truncated stream")
            rest = d.unused_data  # concatenated frames are one body
            data = memoryview(rest + bytes(data[i:])) if (rest or i < len(data)) else memoryview(b"")
    except zstandard.ZstdError as e:
        raise BodyError(400, f"invalid zstd body: {e}") from None
    return out.getvalue()


def _brotli(body: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    out = io.BytesIO()
    try:
        # output_buffer_limit caps each call's output; drain with empty input until done,
        # checking the running total against the cap.
        chunk = d.process(body, output_buffer_limit=1 << 20)
        while True:
            out.write(chunk)
            if out.tell() > limit:
                raise _too_big(limit)
            if d.is_finished():
                break
            chunk = d.process(b"", output_buffer_limit=1 << 20)
            if not chunk and not d.is_finished():
                raise BodyError(400, "invalid brotli body: truncated stream")
    except brotli.error as e:
        raise BodyError(400, f"invalid brotli body: {e}") from None
    return out.getvalue()


def decode(
    body: bytes, encoding: str | None, max_decoded: int, allowed: tuple[str, ...] = ("identity", "gzip", "zstd")
) -> bytes:
    """Undo Content-Encoding. Unknown or disallowed encodings are 415; corrupt data is 400."""
    enc = (encoding or "identity").strip().lower()
    if enc == "x-gzip":
        enc = "gzip"
    if enc not in allowed:
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r}; use one of {', '.join(allowed)}")
    if enc == "identity":
        if len(body) > max_decoded:
            raise _too_big(max_decoded)
        return body
    if enc == "gzip":
        return _zlib(body, 31, max_decoded)
    if enc == "deflate":
        return _deflate(body, max_decoded)
    if enc == "br":
        return _brotli(body, max_decoded)
    return _zstd(body, max_decoded)

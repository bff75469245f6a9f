"""The HTTP side of an export (`obshub/query/export.py`): a streamed response that never passes
off a broken export as a complete one.

The first page is read before the response starts, so a store that is down answers with a
normal error (the API's 503 JSON, the web UI's message page). A store failure after that cannot
change the status any more: the stream then ends *without* its final chunk. uvicorn closes the
connection, and the client sees a truncated transfer (curl: "transfer closed with outstanding
read data remaining", exit 18; httpx: RemoteProtocolError), never a short file that looks whole.
The hub logs the abort with the rows already sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Generator

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Send

from obshub.errors import StoreError
from obshub.events import format_ts
from obshub.query.export import MEDIA_TYPES, Chunk, ExportRequest

__all__ = ["start_export"]

log = structlog.get_logger("obshub")


class ExportResponse(StreamingResponse):
    def __init__(self, pages: Generator[Chunk, None, None], first: Chunk, req: ExportRequest, path: str) -> None:
        self.rows = 0
        self.path = path
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        super().__init__(
            self._body(pages, first),
            media_type=MEDIA_TYPES[req.format],
            headers={
                "Content-Disposition": f'attachment; filename="obshub-{stamp}.{req.format}"',
                "Cache-Control": "no-store",
                # Where this export ends: the `from` of the next one, for gap-free incremental exports.
                "X-Obshub-Export-To": format_ts(req.end),
            },
        )

    async def _body(self, pages: Generator[Chunk, None, None], first: Chunk) -> AsyncIterator[bytes]:
        chunk: Chunk | None = first
        try:
            while chunk is not None:
                data, n = chunk
                if data:
                    yield data
                self.rows += n
                # `next(pages, None)`: a StopIteration cannot cross the worker thread's future.
                chunk = await run_in_threadpool(next, pages, None)
        finally:
            pages.close()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for data in self.body_iterator:
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except StoreError as e:
            log.error(
                "export aborted: the store failed mid-stream; the client gets a truncated transfer",
                rows_sent=self.rows,
                error=str(e),
                path=self.path,
            )
            return  # no final chunk: the server closes the connection
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def start_export(pages: Generator[Chunk, None, None], req: ExportRequest, path: str) -> ExportResponse:
    """Read the first page of `pages` (`query.export.chunks` of `req`; a store error here
    raises, before any byte is sent), then stream."""
    first = await run_in_threadpool(next, pages, None)
    assert first is not None  # chunks() always yields the first page, even an empty one
    return ExportResponse(pages, first, req, path)

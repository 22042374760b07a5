"""A streamed response whose cleanup always runs, even when its client disconnects mid-stream."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

# Cleanup closes sockets and releases the slot; it must finish even inside a cancelled task.
CLEANUP_TIMEOUT_S = 2.0


def json_line(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class ChunkStream(Response):
    """Sends each chunk as soon as it is produced, then closes ``cleanup`` (shielded).

    Starlette's ``StreamingResponse`` leaves an abandoned async generator to the garbage
    collector; here the resources behind the stream (the upstream request, the slot) are
    released deterministically when the stream ends, fails or is cancelled.
    """

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        *,
        cleanup: AsyncExitStack,
        media_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._chunks = chunks
        self._cleanup = cleanup
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self._chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                await self._chunks.aclose()
                await self._cleanup.aclose()


STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

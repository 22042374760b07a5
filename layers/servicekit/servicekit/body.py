"""Read a request body without ever buffering more than the limit, and decode it as a JSON object."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from starlette.requests import Request

from servicekit.errors import BodyReadTimeout, BodyTooLarge, InvalidJSON, InvalidRequest


class BodyLimits(Protocol):
    """What limits a request body: chat's and the runner's Settings (MAX_BODY_BYTES, BODY_READ_TIMEOUT_S)."""

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def body_read_timeout_s(self) -> float: ...


async def read_body(request: Request, *, max_bytes: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"The request body is {declared} bytes; the limit is {max_bytes}.")
    chunks: list[bytes] = []
    size = 0
    try:
        # A client that trickles its body must not hold a connection (and memory) forever.
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(f"The request body is larger than the limit of {max_bytes} bytes.")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyReadTimeout(f"The request body did not arrive within {timeout_s:g} s.") from None
    return b"".join(chunks)


async def read_json_object(request: Request, limits: BodyLimits) -> dict[str, Any]:
    raw = await read_body(request, max_bytes=limits.max_body_bytes, timeout_s=limits.body_read_timeout_s)
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidJSON("The request body is not valid UTF-8.") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data

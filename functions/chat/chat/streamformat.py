"""The two stream formats chat offers: NDJSON (the runner's lines as they are) and Server-Sent Events.

While a stream waits for the slot the runner sends ``{"queued": {"position": 3, "eta_s": 12.5}}``
lines (SSE: ``event: queued``); the generation's lines follow, then ``done`` (or ``error``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from servicekit.errors import ServiceError, UpstreamError, error_envelope
from servicekit.observe.record import RequestRecord

StreamFormat = Literal["ndjson", "sse"]
MEDIA_TYPES: dict[StreamFormat, str] = {"ndjson": "application/x-ndjson", "sse": "text/event-stream"}


def stream_format(accept: str) -> StreamFormat:
    return "sse" if "text/event-stream" in accept.lower() else "ndjson"


FINAL_EVENTS = frozenset({"done", "error"})


def _event_name(data: Any) -> str | None:
    if isinstance(data, dict):
        if data.get("done") is True:
            return "done"
        if "error" in data:
            return "error"
        if "queued" in data:
            return "queued"
    return None


def encode(line: str, data: Any, fmt: StreamFormat) -> bytes:
    if fmt == "ndjson":
        return line.encode() + b"\n"
    event = _event_name(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {line}\n\n".encode()


def _note_last_line(record: RequestRecord, event: str, data: dict[str, Any]) -> None:
    if event == "done":
        record.note_reply(record.model, data)
    elif isinstance(data.get("error"), dict):
        record.error_code = str(data["error"].get("code", ""))


async def relay(
    lines: AsyncIterator[str], fmt: StreamFormat, request_id: str, record: RequestRecord | None = None
) -> AsyncGenerator[bytes, None]:
    """Forward each line as soon as it arrives; a failure mid-stream becomes the last line.

    The ``record`` (the request log's) learns the last line: usage and timings, or the error code.
    """
    try:
        async for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                raise UpstreamError("The runner sent a line that is not JSON.") from None
            yield encode(line, data, fmt)
            if (event := _event_name(data)) in FINAL_EVENTS:
                if record is not None and event is not None:
                    _note_last_line(record, event, data)
                return
        raise UpstreamError("The runner ended the stream before the generation was done.")
    except ServiceError as exc:
        if record is not None:
            record.error_code = exc.code
        envelope = error_envelope(exc, request_id)
        yield encode(json.dumps(envelope, separators=(",", ":")), envelope, fmt)

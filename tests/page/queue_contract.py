"""A stand-in for chat with the fair queue (issue 10): the page itself, and a ``/chat`` that streams
the queue's contract, step by step as the test releases it.

The contract: while a streamed ``/chat`` request waits for the slot, NDJSON lines
``{"queued": {"position": 3, "eta_s": 12.5}}`` whenever they change (and at least every 5 s), then
the generation's ``{"response": "..."}`` chunks, then ``{"done": true, ...}``; a failure ends the
stream with ``{"error": {...}}``. Once the queue lands on main, the page's queue test runs against
the real stack instead (``test_a_second_page_sees_its_place_in_the_real_queue``).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from chat.page import Page
from chat.settings import Settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.waiting import eventually

MODEL = "contract-model"


class QueueContract:
    """Each step of the stream waits until the test releases it (``release()``)."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.steps = steps
        self.released = 0
        self.lock = threading.Lock()
        page = Page(Settings())
        self.app = Starlette(
            routes=[
                Route("/", page.response, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/chat", self.chat, methods=["POST"]),
                *page.routes(),
            ]
        )

    def release(self, steps: int = 1) -> None:
        with self.lock:
            self.released += steps

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(self, request: Request) -> Response:
        return StreamingResponse(self._lines(), media_type="application/x-ndjson")

    def _released_past(self, index: int) -> bool:
        return self.released > index

    async def _lines(self) -> AsyncIterator[bytes]:
        for index, step in enumerate(self.steps):
            # The test's thread releases each step: poll, as an asyncio.Event cannot be set from there.
            await eventually(functools.partial(self._released_past, index), timeout_s=60, what="the step released")
            yield json.dumps(step).encode() + b"\n"

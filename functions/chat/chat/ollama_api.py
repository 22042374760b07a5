"""Ollama's API on chat: ``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/embeddings`` (through the
runner's slot), ``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/version`` and ``/`` (never queued),
and the management endpoints, refused. Translation lives in :mod:`chat.dialects.ollama`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servicekit.callers import caller_of
from servicekit.errors import ManagementRefused
from servicekit.requestid import request_id_of
from servicekit.streaming import ChunkStream
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from chat.dialects import ollama, runner_events
from chat.metadata import Metadata
from chat.models import MISSING
from chat.page import Page, wants_html

if TYPE_CHECKING:
    from chat.app import Chat

NDJSON = "application/x-ndjson"
RUNNING = "Ollama is running"
# Ollama's management endpoints, on the methods Ollama serves them (others are 405, as there).
MANAGEMENT = {
    "/api/pull": ["POST"],
    "/api/push": ["POST"],
    "/api/create": ["POST"],
    "/api/copy": ["POST"],
    "/api/delete": ["DELETE"],
    "/api/blobs/{digest}": ["POST", "HEAD"],
}


def root_representation(request: Request, page: Page) -> Response:
    """``GET /``: the chat page for browsers (``Accept: text/html``), else what Ollama answers, so
    tools that probe for "Ollama is running" find it. Either way it varies on ``Accept``."""
    if wants_html(request.headers.get("accept", "")):
        return page.response(request)
    return PlainTextResponse(RUNNING, headers={"Vary": "Accept"})


class OllamaAPI:
    def __init__(self, chat: Chat, metadata: Metadata, caller_needed: list[Middleware], page: Page) -> None:
        self.chat = chat
        self.page = page
        self.metadata = metadata
        self.caller_needed = caller_needed
        self.max_prompt_chars = chat.settings.max_prompt_chars

    def routes(self) -> list[BaseRoute]:
        """What names a model needs a caller (the key decides which models it sees); the probes
        (``/``, ``/api/version``) and the refusals of management are public."""
        keyed = self.caller_needed
        return [
            Route("/", self.root, methods=["GET"]),  # HEAD is served with GET
            Route("/api/chat", self.chat_endpoint, methods=["POST"], middleware=keyed),
            Route("/api/generate", self.generate, methods=["POST"], middleware=keyed),
            Route("/api/embed", self.embed, methods=["POST"], middleware=keyed),
            Route("/api/embeddings", self.embeddings, methods=["POST"], middleware=keyed),
            Route("/api/tags", self.tags, methods=["GET"], middleware=keyed),
            Route("/api/show", self.show, methods=["POST"], middleware=keyed),
            Route("/api/ps", self.ps, methods=["GET"], middleware=keyed),
            Route("/api/version", self.version, methods=["GET"]),
            *(Route(path, self.management, methods=methods) for path, methods in MANAGEMENT.items()),
        ]

    async def root(self, request: Request) -> Response:
        return root_representation(request, self.page)

    async def chat_endpoint(self, request: Request) -> Response:
        return await self._generate(request, chat=True)

    async def generate(self, request: Request) -> Response:
        return await self._generate(request, chat=False)

    async def _generate(self, request: Request, *, chat: bool) -> Response:
        data = await self.chat.body(request)
        requested, generation = ollama.generation_request(data, chat=chat, max_prompt_chars=self.max_prompt_chars)
        model = self.chat.allowed_for(caller_of(request.scope), requested)
        shown = requested if requested is not MISSING else model  # Ollama echoes the name it was asked for
        if not generation.get("stream"):
            reply, headers = await self.chat.whole(model, generation, request)
            return JSONResponse(ollama.reply(shown, reply, chat=chat), headers=headers)
        lines, headers, cleanup = await self.chat.open_stream(model, generation, request)
        chunks = ollama.stream(shown, runner_events(lines), chat=chat)
        return ChunkStream(chunks, cleanup=cleanup, media_type=NDJSON, headers=headers)

    async def embed(self, request: Request) -> Response:
        return await self._embed(request, legacy=False)

    async def embeddings(self, request: Request) -> Response:
        return await self._embed(request, legacy=True)

    async def _embed(self, request: Request, *, legacy: bool) -> Response:
        data = await self.chat.body(request)
        requested, embedding = ollama.embedding_request(data, legacy=legacy, max_prompt_chars=self.max_prompt_chars)
        model = self.chat.allowed_for(caller_of(request.scope), requested)
        reply, headers = await self.chat.embed(model, embedding, request)
        shown = requested if requested is not MISSING else model
        body = ollama.legacy_embedding_reply(reply) if legacy else ollama.embed_reply(shown, reply)
        return JSONResponse(body, headers=headers)

    async def tags(self, request: Request) -> Response:
        entries = await self.metadata.tags(request_id_of(request.scope))
        return JSONResponse({"models": self.chat.visible(caller_of(request.scope), entries)})

    async def show(self, request: Request) -> Response:
        data = await self.chat.body(request)
        ollama.check_show_request(data)
        # Older clients send "name"; each name given must be an allowed one.
        caller = caller_of(request.scope)
        names = [self.chat.allowed_for(caller, data[key]) for key in ("model", "name") if key in data]
        model = names[0] if names else self.chat.allowed_for(caller)
        return JSONResponse(await self.metadata.show(model, request_id_of(request.scope)))

    async def ps(self, request: Request) -> Response:
        entries = await self.metadata.ps(request_id_of(request.scope))
        return JSONResponse({"models": self.chat.visible(caller_of(request.scope), entries)})

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": await self.metadata.version(request_id_of(request.scope))})

    async def management(self, request: Request) -> Response:
        raise ManagementRefused(
            f"{request.url.path} is refused: models are managed on the Ollama host by its operator "
            "(e.g. `ollama pull`), never through this public endpoint."
        )

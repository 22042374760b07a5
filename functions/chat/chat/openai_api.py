"""OpenAI's API on chat: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` (through the
runner's slot), ``/v1/models`` and ``/v1/models/{id}`` (never queued). Translation lives in
:mod:`chat.dialects.openai`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from servicekit.callers import caller_of
from servicekit.errors import InvalidRequest, ModelNotFound
from servicekit.generation import GenerationRequest
from servicekit.requestid import request_id_of
from servicekit.streaming import ChunkStream
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chat.dialects import openai, runner_events
from chat.metadata import Metadata
from chat.models import MISSING

if TYPE_CHECKING:
    from chat.app import Chat

SSE = "text/event-stream"


def _created(entry: dict[str, Any]) -> int:
    """A model's creation time for OpenAI (seconds): Ollama's ``modified_at``, when it has one."""
    try:
        return int(datetime.fromisoformat(str(entry.get("modified_at"))).timestamp())
    except ValueError:
        return 0


class OpenAIAPI:
    def __init__(self, chat: Chat, metadata: Metadata, caller_needed: list[Middleware]) -> None:
        self.chat = chat
        self.metadata = metadata
        self.caller_needed = caller_needed
        self.max_prompt_chars = chat.settings.max_prompt_chars

    def routes(self) -> list[BaseRoute]:
        """Every route needs a caller (OpenAI's clients always send their key as a Bearer token)."""
        keyed = self.caller_needed
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"], middleware=keyed),
            Route("/v1/completions", self.completions, methods=["POST"], middleware=keyed),
            Route("/v1/embeddings", self.embeddings, methods=["POST"], middleware=keyed),
            Route("/v1/models", self.models, methods=["GET"], middleware=keyed),
            Route("/v1/models/{model:path}", self.model, methods=["GET"], middleware=keyed),
        ]

    async def chat_completions(self, request: Request) -> Response:
        data = await self.chat.body(request)
        requested, generation = openai.chat_request(data, max_prompt_chars=self.max_prompt_chars)
        return await self._complete(request, data, requested, generation, chat=True)

    async def completions(self, request: Request) -> Response:
        data = await self.chat.body(request)
        requested, generation = openai.completion_request(data, max_prompt_chars=self.max_prompt_chars)
        return await self._complete(request, data, requested, generation, chat=False)

    async def _complete(
        self, request: Request, data: dict[str, Any], requested: Any, generation: GenerationRequest, *, chat: bool
    ) -> Response:
        if requested is MISSING:
            raise InvalidRequest("'model' is required.")
        model = self.chat.allowed_for(caller_of(request.scope), requested)
        completion = openai.Completion(request_id_of(request.scope), requested, chat=chat)
        if not generation.get("stream"):
            reply, headers = await self.chat.whole(model, generation, request)
            return JSONResponse(completion.whole(reply), headers=headers)
        options = data.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        lines, headers, cleanup = await self.chat.open_stream(model, generation, request)
        chunks = completion.stream(runner_events(lines), include_usage=include_usage)
        return ChunkStream(chunks, cleanup=cleanup, media_type=SSE, headers=headers)

    async def embeddings(self, request: Request) -> Response:
        data = await self.chat.body(request)
        requested, embedding, base64_encoded = openai.embedding_request(data, max_prompt_chars=self.max_prompt_chars)
        if requested is MISSING:
            raise InvalidRequest("'model' is required.")
        model = self.chat.allowed_for(caller_of(request.scope), requested)
        reply, headers = await self.chat.embed(model, embedding, request)
        return JSONResponse(openai.embedding_reply(requested, reply, base64_encoded=base64_encoded), headers=headers)

    async def models(self, request: Request) -> Response:
        entries = self.chat.visible(caller_of(request.scope), await self.metadata.tags(request_id_of(request.scope)))
        data = [openai.model_object(entry["name"], _created(entry)) for entry in entries]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        wanted = request.path_params["model"]
        name = self.chat.models.allowed_name(wanted)
        entries = self.chat.visible(caller_of(request.scope), await self.metadata.tags(request_id_of(request.scope)))
        for entry in entries if name else []:
            if self.chat.models.allowed_name(entry["name"]) == name:
                return JSONResponse(openai.model_object(wanted, _created(entry)))
        raise ModelNotFound(f"The model '{wanted}' does not exist here.")

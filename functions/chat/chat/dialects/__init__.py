"""The APIs chat speaks, each translated to and from the one internal request.

Every dialect parses its body into :class:`servicekit.generation.GenerationRequest` (or
:class:`servicekit.embedding.EmbeddingRequest`), sends it through the same runner and slot, and
renders the runner's reply, stream and errors in its own shapes:

- ours, ``/chat``: :mod:`chat.app` and :mod:`chat.streamformat`;
- Ollama's, ``/api/*``: :mod:`chat.dialects.ollama` (endpoints in :mod:`chat.ollama_api`);
- OpenAI's, ``/v1/chat/completions`` and friends: :mod:`chat.dialects.openai` (endpoints in :mod:`chat.openai_api`).

Which dialect a path speaks — and so the shape of its error bodies — is :func:`dialect_of`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from servicekit.errors import BodyRenderer, UpstreamError, error_envelope
from servicekit.upstream import json_object

from chat.dialects import ollama, openai
from chat.errors import RunnerRefused

Dialect = Literal["ours", "ollama", "openai"]
OPENAI_PREFIXES = ("/v1/chat/", "/v1/completions", "/v1/embeddings", "/v1/models")


def dialect_of(path: str) -> Dialect:
    if path.startswith("/api/") or path == "/":
        return "ollama"
    if path.startswith(OPENAI_PREFIXES):
        return "openai"
    return "ours"


RENDERERS: dict[Dialect, BodyRenderer] = {
    "ours": error_envelope,
    "ollama": ollama.error_body,
    "openai": openai.error_body,
}


def error_renderer(path: str) -> BodyRenderer:
    return RENDERERS[dialect_of(path)]


async def runner_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The runner's stream, decoded: chunks, then the ``done`` summary; its error line is raised."""
    async for line in lines:
        event = json_object(line, "The runner sent a line")
        if isinstance(event.get("error"), dict):
            raise RunnerRefused(502, event["error"], {})
        if "queued" in event:  # the runner's place-in-queue lines: no dialect sends them on
            continue
        yield event
        if event.get("done") is True:
            return
    raise UpstreamError("The runner ended the stream before the generation was done.")

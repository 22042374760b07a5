"""Ollama's API (``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/embeddings``) ⇄ the internal request.

Shapes and defaults as Ollama documents them: ``stream`` is true unless the body says false;
streams are NDJSON, one object per chunk, then a ``done`` object with Ollama's durations (in
nanoseconds) and counts; an error is ``{"error": "..."}`` — a status before the stream starts,
the stream's last line after. Fields Ollama has that this gateway does not offer (images, raw
prompts, templates, context) are refused with 400, never silently dropped.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from servicekit.embedding import EmbeddingRequest, parse_embedding_request
from servicekit.errors import InvalidRequest, ServiceError, UnsupportedParameter
from servicekit.generation import GenerationRequest, parse_generation_request
from servicekit.streaming import json_line

from chat.models import MISSING

CHAT_FIELDS = frozenset({"model", "messages", "format", "options", "keep_alive", "think", "tools", "stream"})
GENERATE_FIELDS = frozenset({"model", "prompt", "system", "format", "options", "keep_alive", "think", "stream"})
EMBED_FIELDS = frozenset({"model", "input", "truncate", "dimensions", "options", "keep_alive"})
LEGACY_EMBED_FIELDS = frozenset({"model", "prompt", "options", "keep_alive"})
SHOW_FIELDS = frozenset({"model", "name", "verbose"})
NOT_OFFERED = "'{}' is not offered by this gateway."


def _refuse_unknown(data: Mapping[str, Any], fields: frozenset[str]) -> None:
    for name in sorted(set(data) - fields):
        raise UnsupportedParameter(NOT_OFFERED.format(name))
    for index, message in enumerate(data.get("messages") or []):
        if isinstance(message, dict) and "images" in message:
            raise UnsupportedParameter(f"messages[{index}].images: images are not offered by this gateway.")


def _set_options(body: dict[str, Any]) -> None:
    """Ollama reads an option that is null as not set; LangChain's Ollama classes send every option
    they know, most of them null. Only the ones set are checked (and passed on)."""
    if isinstance(body.get("options"), dict):
        body["options"] = {name: value for name, value in body["options"].items() if value is not None}


def generation_request(data: Mapping[str, Any], *, chat: bool, max_prompt_chars: int) -> tuple[Any, GenerationRequest]:
    """An ``/api/chat`` (``chat``) or ``/api/generate`` body → (the model asked for, the internal request)."""
    _refuse_unknown(data, CHAT_FIELDS if chat else GENERATE_FIELDS)
    body = {name: value for name, value in data.items() if name != "model"}
    body.setdefault("stream", True)  # Ollama's default
    _set_options(body)
    if body.get("format") == "":  # Ollama's "no format"
        del body["format"]
    if not chat and "prompt" not in body:
        raise InvalidRequest("'prompt' is required.")
    if chat and "messages" not in body:
        raise InvalidRequest("'messages' is required.")
    return data.get("model", MISSING), parse_generation_request(body, max_prompt_chars=max_prompt_chars)


def embedding_request(data: Mapping[str, Any], *, legacy: bool, max_prompt_chars: int) -> tuple[Any, EmbeddingRequest]:
    """An ``/api/embed`` body (or the older ``/api/embeddings``, one ``prompt``) → the internal request."""
    _refuse_unknown(data, LEGACY_EMBED_FIELDS if legacy else EMBED_FIELDS)
    body = {name: value for name, value in data.items() if name not in ("model", "prompt")}
    text = data.get("prompt") if legacy else data.get("input")
    body["input"] = [text] if isinstance(text, str) else text
    _set_options(body)
    return data.get("model", MISSING), parse_embedding_request(body, max_prompt_chars=max_prompt_chars)


def check_show_request(data: Mapping[str, Any]) -> None:
    _refuse_unknown(data, SHOW_FIELDS)
    if not isinstance(data.get("verbose", False), bool):
        raise InvalidRequest("'verbose' must be true or false.")


# -- replies --------------------------------------------------------------------------------


def created_at() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ns(ms: Any) -> int:
    return round(float(ms or 0) * 1e6)


def _summary(done: Mapping[str, Any]) -> dict[str, Any]:
    """Ollama's closing fields, from the runner's ``done_reason``, ``usage`` and ``timings``."""
    usage, timings = done.get("usage", {}), done.get("timings", {})
    return {
        "done": True,
        "done_reason": done.get("done_reason", "stop"),
        "total_duration": _ns(timings.get("total_ms")),
        "load_duration": _ns(timings.get("load_ms")),
        "prompt_eval_count": usage.get("prompt_tokens", 0),
        "prompt_eval_duration": _ns(timings.get("prompt_eval_ms")),
        "eval_count": usage.get("completion_tokens", 0),
        "eval_duration": _ns(timings.get("eval_ms")),
    }


def _piece(model: str, chunk: Mapping[str, Any], *, chat: bool) -> dict[str, Any]:
    """One chunk (or a whole reply's text) in Ollama's shape, without the closing fields."""
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": chunk.get("response", "")}
        for name in ("thinking", "tool_calls"):
            if name in chunk:
                message[name] = chunk[name]
        return {"model": model, "created_at": created_at(), "message": message}
    piece = {"model": model, "created_at": created_at(), "response": chunk.get("response", "")}
    if "thinking" in chunk:
        piece["thinking"] = chunk["thinking"]
    return piece


def reply(model: str, runner_reply: Mapping[str, Any], *, chat: bool) -> dict[str, Any]:
    """A whole (``stream: false``) ``/api/chat`` or ``/api/generate`` answer."""
    return {**_piece(model, runner_reply, chat=chat), **_summary(runner_reply)}


async def stream(model: str, events: AsyncIterator[dict[str, Any]], *, chat: bool) -> AsyncGenerator[bytes, None]:
    """The runner's events as Ollama's NDJSON; a failure mid-stream becomes the last line, as Ollama sends it.

    While a request waits in the queue nothing is sent: the official client parses every line
    as a chunk, so even an empty one would show up as an (empty) message.
    """
    try:
        async for event in events:
            if event.get("done") is True:
                yield json_line({**_piece(model, {}, chat=chat), **_summary(event)})
                return
            yield json_line({**_piece(model, event, chat=chat), "done": False})
    except ServiceError as exc:
        yield json_line({"error": exc.message})


def embed_reply(model: str, runner_reply: Mapping[str, Any]) -> dict[str, Any]:
    timings = runner_reply.get("timings", {})
    return {
        "model": model,
        "embeddings": runner_reply["embeddings"],
        "total_duration": _ns(timings.get("total_ms")),
        "load_duration": _ns(timings.get("load_ms")),
        "prompt_eval_count": runner_reply.get("usage", {}).get("prompt_tokens", 0),
    }


def legacy_embedding_reply(runner_reply: Mapping[str, Any]) -> dict[str, Any]:
    return {"embedding": runner_reply["embeddings"][0]}


def error_body(error: ServiceError, request_id: str) -> dict[str, Any]:
    """Ollama's error shape: the message alone (the status and headers say the rest)."""
    return {"error": error.message}

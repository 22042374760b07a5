"""Wire shapes: what we send Ollama, what it answers, and what the runner answers its callers."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from servicekit.embedding import EmbeddingRequest
from servicekit.generation import ChatMessage, Format, GenerationOptions, GenerationRequest, Think

OllamaEndpoint = Literal["generate", "chat", "embed"]


class OllamaRequest(TypedDict):
    model: str
    stream: bool
    prompt: NotRequired[str]
    system: NotRequired[str]
    messages: NotRequired[list[ChatMessage]]
    options: NotRequired[GenerationOptions]
    keep_alive: NotRequired[str | int | float]
    format: NotRequired[Format]
    think: NotRequired[Think]
    tools: NotRequired[list[dict[str, Any]]]


class OllamaEmbedRequest(EmbeddingRequest):
    model: str


class OllamaEmbedReply(TypedDict, total=False):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class OllamaChunk(TypedDict, total=False):
    """One object of /api/generate or /api/chat output (stream or not); durations in ns."""

    model: str
    response: str  # /api/generate
    thinking: str  # /api/generate with think
    message: dict[str, Any]  # /api/chat: {"role": "assistant", "content": ..., "thinking"?, "tool_calls"?}
    done: bool
    done_reason: str
    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    error: str


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int


class Timings(TypedDict):
    queue_ms: float  # waiting for the slot, in the runner
    total_ms: float  # Ollama's total_duration: load + prompt evaluation + generation
    load_ms: float
    prompt_eval_ms: float
    eval_ms: float
    tokens_per_s: float | None


class Extras(TypedDict, total=False):
    """What a thinking model or a tool-calling chat adds beside the text."""

    thinking: str
    tool_calls: list[dict[str, Any]]


class RunReply(Extras):
    model: str
    response: str
    done_reason: str
    usage: Usage
    timings: Timings


class StreamDelta(Extras):
    response: str


class EmbedReply(TypedDict):
    model: str
    embeddings: list[list[float]]
    usage: Usage
    timings: Timings


class StreamDone(TypedDict):
    done: Literal[True]
    done_reason: str
    usage: Usage
    timings: Timings


def ollama_request(model: str, request: GenerationRequest) -> tuple[OllamaEndpoint, OllamaRequest]:
    """Choose the endpoint and build its body: ``prompt`` → /api/generate, ``messages`` → /api/chat.

    Always streamed, whatever the client asked: see :meth:`runner.ollama.OllamaClient.generate`.
    """
    body: OllamaRequest = {"model": model, "stream": True}
    if "options" in request:
        body["options"] = request["options"]
    if "keep_alive" in request:
        body["keep_alive"] = request["keep_alive"]
    if "format" in request:
        body["format"] = request["format"]
    if "think" in request:
        body["think"] = request["think"]
    if "tools" in request:
        body["tools"] = request["tools"]
    if "prompt" in request:
        body["prompt"] = request["prompt"]
        if "system" in request:
            body["system"] = request["system"]
        return "generate", body
    messages = list(request.get("messages", []))
    if "system" in request:
        messages.insert(0, {"role": "system", "content": request["system"]})
    body["messages"] = messages
    return "chat", body


def ollama_embed_request(model: str, request: EmbeddingRequest) -> tuple[OllamaEndpoint, OllamaEmbedRequest]:
    return "embed", {"model": model, **request}


def chunk_text(chunk: OllamaChunk) -> str:
    if "response" in chunk:
        return chunk["response"]
    content = chunk.get("message", {}).get("content", "")
    return content if isinstance(content, str) else ""


def chunk_extras(chunk: OllamaChunk) -> Extras:
    """Thinking and tool calls, wherever the endpoint puts them (top level for generate, message for chat)."""
    extras: Extras = {}
    message = chunk.get("message", {})
    thinking = chunk.get("thinking") or message.get("thinking")
    if isinstance(thinking, str) and thinking:
        extras["thinking"] = thinking
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list) and tool_calls:
        extras["tool_calls"] = tool_calls
    return extras


def gathered(final: OllamaChunk, text: str, thinking: str, tool_calls: list[Any]) -> OllamaChunk:
    """A stream's final chunk carrying what the whole stream said, as a non-streamed answer would."""
    if "message" in final:
        message = {**final["message"], "content": text}
        if thinking:
            message["thinking"] = thinking
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {**final, "message": message}
    whole: OllamaChunk = {**final, "response": text}
    if thinking:
        whole["thinking"] = thinking
    return whole


def _ms(ns: int | None) -> float:
    return round((ns or 0) / 1e6, 3)


def usage_of(final: OllamaChunk) -> Usage:
    return {
        "prompt_tokens": int(final.get("prompt_eval_count", 0)),
        "completion_tokens": int(final.get("eval_count", 0)),
    }


def timings_of(final: OllamaChunk, queue_ms: float) -> Timings:
    eval_count, eval_ns = final.get("eval_count", 0), final.get("eval_duration", 0)
    return {
        "queue_ms": round(queue_ms, 3),
        "total_ms": _ms(final.get("total_duration")),
        "load_ms": _ms(final.get("load_duration")),
        "prompt_eval_ms": _ms(final.get("prompt_eval_duration")),
        "eval_ms": _ms(eval_ns),
        "tokens_per_s": round(eval_count / (eval_ns / 1e9), 2) if eval_ns else None,
    }


def done_of(final: OllamaChunk, queue_ms: float) -> StreamDone:
    return {
        "done": True,
        "done_reason": final.get("done_reason", "stop"),
        "usage": usage_of(final),
        "timings": timings_of(final, queue_ms),
    }

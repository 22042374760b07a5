"""Wire shapes: what we send Ollama, what it answers, and what the runner answers its callers."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from servicekit.generation import ChatMessage, GenerationOptions, GenerationRequest

OllamaEndpoint = Literal["generate", "chat"]


class OllamaRequest(TypedDict):
    model: str
    stream: bool
    prompt: NotRequired[str]
    system: NotRequired[str]
    messages: NotRequired[list[ChatMessage]]
    options: NotRequired[GenerationOptions]
    keep_alive: NotRequired[str | int | float]


class OllamaChunk(TypedDict, total=False):
    """One object of /api/generate or /api/chat output (stream or not); durations in ns."""

    model: str
    response: str  # /api/generate
    message: dict[str, Any]  # /api/chat: {"role": "assistant", "content": ...}
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
    tokens_per_s: float | None


class RunReply(TypedDict):
    model: str
    response: str
    done_reason: str
    usage: Usage
    timings: Timings


class StreamDelta(TypedDict):
    response: str


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


def chunk_text(chunk: OllamaChunk) -> str:
    if "response" in chunk:
        return chunk["response"]
    content = chunk.get("message", {}).get("content", "")
    return content if isinstance(content, str) else ""


def with_text(final: OllamaChunk, text: str) -> OllamaChunk:
    """A stream's final chunk carrying the whole text, as a non-streamed answer would."""
    if "message" in final:
        return {**final, "message": {**final["message"], "content": text}}
    return {**final, "response": text}


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
        "tokens_per_s": round(eval_count / (eval_ns / 1e9), 2) if eval_ns else None,
    }


def done_of(final: OllamaChunk, queue_ms: float) -> StreamDone:
    return {
        "done": True,
        "done_reason": final.get("done_reason", "stop"),
        "usage": usage_of(final),
        "timings": timings_of(final, queue_ms),
    }

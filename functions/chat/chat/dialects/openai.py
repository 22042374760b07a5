"""OpenAI's API (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``) ⇄ the internal request.

Requests: ``max_tokens``/``max_completion_tokens`` → ``num_predict``; ``temperature``, ``top_p``,
``stop``, ``seed``, ``frequency_penalty``, ``presence_penalty`` → Ollama's options;
``response_format`` (``json_object`` → ``"json"``, ``json_schema`` → the schema) → ``format``;
``reasoning_effort`` → ``think``; ``tools`` as they are (Ollama uses OpenAI's tool shape). What
cannot be honoured (``n`` > 1, logprobs, images, token-array inputs) is a 400 naming the
parameter. Replies: ``finish_reason`` from Ollama's ``done_reason``; streams are SSE chunks
ending ``data: [DONE]``, with a usage chunk first when ``stream_options.include_usage``.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from servicekit.embedding import EmbeddingRequest, parse_embedding_request
from servicekit.errors import InvalidRequest, ServiceError, UnsupportedParameter
from servicekit.generation import ChatMessage, GenerationRequest, parse_generation_request, parse_options

from chat.models import MISSING

SAMPLING = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}
COMMON_FIELDS = frozenset({"model", "stream", "stream_options", "n", "max_tokens", "stop", "user", *SAMPLING})
# Accepted and without effect here: they change nothing about a generation.
NO_EFFECT = frozenset({"user", "metadata", "store", "parallel_tool_calls"})
CHAT_FIELDS = (
    COMMON_FIELDS
    | NO_EFFECT
    | {"messages", "max_completion_tokens", "response_format", "tools", "tool_choice", "reasoning_effort", "logprobs"}
)
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt", "echo", "logprobs", "suffix"}
EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
MESSAGE_FIELDS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
FINGERPRINT = "fp_ollama"


def _unsupported(param: str, why: str) -> UnsupportedParameter:
    error = UnsupportedParameter(f"'{param}' {why}")
    error.param = param  # type: ignore[attr-defined]
    return error


# Parameters accepted without effect must still be what OpenAI documents them to be.
KINDS: dict[str, tuple[type, ...]] = {
    "user": (str,),
    "metadata": (dict,),
    "store": (bool,),
    "parallel_tool_calls": (bool,),
    "stream_options": (dict,),
    "echo": (bool,),
    "suffix": (str, type(None)),
}


def _check_fields(data: Mapping[str, Any], fields: frozenset[str]) -> None:
    for name in sorted(set(data) - fields):
        raise _unsupported(name, "is not offered by this gateway.")
    for name, kinds in KINDS.items():
        if name in data and (not isinstance(data[name], kinds) or isinstance(data[name], bool) is not (bool in kinds)):
            raise InvalidRequest(f"'{name}' has the wrong type.")
    if "n" in data and (data["n"] != 1 or isinstance(data["n"], bool)):
        raise _unsupported("n", "must be 1: this gateway runs one generation at a time, one choice each.")
    logprobs = data.get("logprobs")
    if logprobs is not None and logprobs is not False:
        raise _unsupported("logprobs", "is not offered by this gateway.")
    if not isinstance(data.get("stream_options", {}).get("include_usage", False), bool):
        raise InvalidRequest("'stream_options.include_usage' must be true or false.")
    if "stream" in data and not isinstance(data["stream"], bool):
        raise InvalidRequest("'stream' must be true or false.")


def _common(data: Mapping[str, Any], body: dict[str, Any]) -> None:
    """Sampling, stop and length parameters → Ollama's options; stream."""
    options = {name: data[key] for key, name in SAMPLING.items() if data.get(key) is not None}
    for key in ("max_tokens", "max_completion_tokens"):  # both checked; the newer name wins
        if data.get(key) is not None:
            options["num_predict"] = parse_options({"num_predict": data[key]})["num_predict"]
    stop = data.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else stop
    if options:
        body["options"] = options
    body["stream"] = data.get("stream") or False


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _unsupported(f"{where}.content", "may only hold text parts here.")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidRequest(f"{where}.content must be a string or a list of text parts.")


def _tool_calls(calls: Any, where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    """OpenAI's ``{"id", "function": {"name", "arguments": "<json>"}}`` → Ollama's (arguments as an object)."""
    if not isinstance(calls, list):
        raise InvalidRequest(f"{where}.tool_calls must be a list.")
    converted = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"{where}.tool_calls must be function calls with a name.")
        raw = function.get("arguments", "{}")
        if not isinstance(raw, str):
            raise InvalidRequest(f"{where}.tool_calls: arguments must be a string (JSON).")
        try:
            arguments: Any = json.loads(raw or "{}")
        except ValueError:
            arguments = raw  # not JSON: Ollama decides whether it takes it
        names[str(call.get("id", ""))] = function["name"]
        converted.append({"function": {"name": function["name"], "arguments": arguments}})
    return converted


def _messages(value: Any) -> list[ChatMessage] | Any:
    if not isinstance(value, list):
        return value  # the internal validation names the problem
    messages: list[ChatMessage] = []
    names: dict[str, str] = {}  # tool_call_id → the tool's name, for the tool's answer
    for index, item in enumerate(value):
        where = f"messages[{index}]"
        role = item.get("role") if isinstance(item, dict) else None
        if not isinstance(role, str) or role not in ROLES or not set(item) <= MESSAGE_FIELDS:
            raise InvalidRequest(
                f"{where} must be an object whose role is one of {sorted(ROLES)}, with any of {sorted(MESSAGE_FIELDS)}."
            )
        for name in ("name", "tool_call_id"):
            if name in item and not isinstance(item[name], str):
                raise InvalidRequest(f"{where}.{name} must be a string.")
        message: ChatMessage = {"role": ROLES[item["role"]], "content": _text(item.get("content"), where)}  # type: ignore[typeddict-item]
        if "tool_calls" in item:
            message["tool_calls"] = _tool_calls(item["tool_calls"], where, names)
        if item["role"] == "tool" and str(item.get("tool_call_id")) in names:
            message["tool_name"] = names[str(item["tool_call_id"])]
        messages.append(message)
    return messages


def _format(response_format: Any) -> Any:
    """``response_format`` → Ollama's ``format`` (None: no format)."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    spec = response_format.get("json_schema") if kind == "json_schema" else None
    if isinstance(spec, dict) and isinstance(spec.get("schema", {}), dict):
        return spec.get("schema", {})
    raise InvalidRequest("'response_format' must be of type text, json_object or json_schema (with a schema object).")


def chat_request(data: Mapping[str, Any], *, max_prompt_chars: int) -> tuple[Any, GenerationRequest]:
    """A ``/v1/chat/completions`` body → (the model asked for, the internal request)."""
    _check_fields(data, CHAT_FIELDS)
    if "messages" not in data:
        raise InvalidRequest("'messages' is required.")
    body: dict[str, Any] = {"messages": _messages(data["messages"])}
    _common(data, body)
    if (fmt := _format(data.get("response_format"))) is not None:
        body["format"] = fmt
    tool_choice = data.get("tool_choice", "auto")
    if tool_choice not in ("auto", "none"):
        raise _unsupported("tool_choice", 'may only be "auto" or "none" here.')
    if "tools" in data:
        body["tools"] = data["tools"] if tool_choice == "auto" else []
    if "reasoning_effort" in data:
        effort = data["reasoning_effort"]
        if effort not in ("none", "low", "medium", "high"):
            raise InvalidRequest("'reasoning_effort' must be one of none, low, medium, high.")
        body["think"] = False if effort == "none" else effort
    return data.get("model", MISSING), parse_generation_request(body, max_prompt_chars=max_prompt_chars)


def completion_request(data: Mapping[str, Any], *, max_prompt_chars: int) -> tuple[Any, GenerationRequest]:
    """A ``/v1/completions`` body → (the model asked for, the internal request)."""
    _check_fields(data, COMPLETION_FIELDS)
    if data.get("echo") or data.get("suffix"):
        raise _unsupported("echo" if data.get("echo") else "suffix", "is not offered by this gateway.")
    if "prompt" not in data:
        raise InvalidRequest("'prompt' is required.")
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # one prompt in a list; several would need n choices
    body: dict[str, Any] = {"prompt": prompt}
    _common(data, body)
    return data.get("model", MISSING), parse_generation_request(body, max_prompt_chars=max_prompt_chars)


def embedding_request(data: Mapping[str, Any], *, max_prompt_chars: int) -> tuple[Any, EmbeddingRequest, bool]:
    """A ``/v1/embeddings`` body → (model, the internal request, whether to answer base64)."""
    for name in sorted(set(data) - EMBEDDING_FIELDS):
        raise _unsupported(name, "is not offered by this gateway.")
    encoding = data.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest('\'encoding_format\' must be "float" or "base64".')
    texts = data.get("input")
    if isinstance(texts, list) and any(not isinstance(t, str) for t in texts):
        raise _unsupported("input", "must be text here (token arrays are not offered).")
    body: dict[str, Any] = {"input": [texts] if isinstance(texts, str) else texts}
    if "dimensions" in data:
        body["dimensions"] = data["dimensions"]
    if "user" in data and not isinstance(data["user"], str):
        raise InvalidRequest("'user' must be a string.")
    return (
        data.get("model", MISSING),
        parse_embedding_request(body, max_prompt_chars=max_prompt_chars),
        encoding == "base64",
    )


# -- replies --------------------------------------------------------------------------------


def _usage(usage: Mapping[str, Any]) -> dict[str, int]:
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(done_reason: Any, tool_calls: bool) -> str:
    if tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _openai_calls(calls: list[dict[str, Any]], *, indexed: bool) -> list[dict[str, Any]]:
    converted = []
    for index, call in enumerate(calls):
        function = call.get("function", {})
        entry: dict[str, Any] = {
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": function.get("name", ""), "arguments": json.dumps(function.get("arguments", {}))},
        }
        converted.append({"index": index, **entry} if indexed else entry)
    return converted


class Completion:
    """The envelope every object of one answer shares: its id, creation time and model."""

    def __init__(self, request_id: str, model: str, *, chat: bool) -> None:
        self.chat = chat
        self.head = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{request_id}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }

    def whole(self, runner_reply: Mapping[str, Any]) -> dict[str, Any]:
        calls = runner_reply.get("tool_calls") or []
        reason = finish_reason(runner_reply.get("done_reason"), bool(calls))
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": runner_reply.get("response", "")}
            if calls:
                message["tool_calls"] = _openai_calls(calls, indexed=False)
            if runner_reply.get("thinking"):
                message["reasoning"] = runner_reply["thinking"]
            choice["message"] = message
        else:
            choice["text"] = runner_reply.get("response", "")
        return {**self.head, "choices": [choice], "usage": _usage(runner_reply.get("usage", {}))}

    def _chunk(self, delta: dict[str, Any], reason: str | None, usage: bool) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
        if self.chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta.get("content", "")
        chunk: dict[str, Any] = {
            **self.head,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "choices": [choice],
        }
        if usage:
            chunk["usage"] = None
        return sse(chunk)

    async def stream(
        self, events: AsyncIterator[dict[str, Any]], *, include_usage: bool
    ) -> AsyncGenerator[bytes, None]:
        """Runner events → SSE chunks, then ``data: [DONE]``; a failure mid-stream is an ``error`` chunk.

        Queue heartbeats go here when the queue can report positions: SSE comment lines
        (``: queued position=3 eta_s=12``), which every client ignores.
        """
        called = False
        first = True
        try:
            async for event in events:
                if event.get("done") is True:
                    yield self._chunk({}, finish_reason(event.get("done_reason"), called), include_usage)
                    if include_usage:
                        yield sse(
                            {
                                **self.head,
                                "object": self._chunk_object(),
                                "choices": [],
                                "usage": _usage(event.get("usage", {})),
                            }
                        )
                    yield b"data: [DONE]\n\n"
                    return
                delta: dict[str, Any] = {"role": "assistant"} if first else {}
                first = False
                delta["content"] = event.get("response", "")
                if event.get("thinking"):
                    delta["reasoning"] = event["thinking"]
                if event.get("tool_calls"):
                    called = True
                    delta["tool_calls"] = _openai_calls(event["tool_calls"], indexed=True)
                yield self._chunk(delta, None, include_usage)
        except ServiceError as exc:
            yield sse(error_body(exc, ""))

    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"


def sse(data: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def embedding_reply(model: str, runner_reply: Mapping[str, Any], *, base64_encoded: bool) -> dict[str, Any]:
    def encode(vector: list[float]) -> Any:
        # OpenAI's base64 format: the vector as little-endian float32 (the official client's default).
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if base64_encoded else vector

    data = [
        {"object": "embedding", "embedding": encode(v), "index": i} for i, v in enumerate(runner_reply["embeddings"])
    ]
    tokens = int(runner_reply.get("usage", {}).get("prompt_tokens", 0))
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "library"}


ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(error: ServiceError, request_id: str) -> dict[str, Any]:
    """OpenAI's error shape; ``code`` is ours (``queue_full``, ``model_not_found``, ...)."""
    kind = ERROR_TYPES.get(error.status) or ("invalid_request_error" if error.status < 500 else "server_error")
    return {
        "error": {"message": error.message, "type": kind, "param": getattr(error, "param", None), "code": error.code}
    }

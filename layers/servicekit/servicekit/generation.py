"""The one generation request every API is translated into, and its validation.

Chat's dialects (``/chat``, Ollama's ``/api/chat`` and ``/api/generate``, OpenAI's
``/v1/chat/completions`` and ``/v1/completions``) each parse their body into a
:class:`GenerationRequest`; chat validates it with :func:`parse_generation_request` before
forwarding anything, and the runner validates it again, because it is a service of its own.
The TypedDicts below are the contract: the limits on their fields (``Annotated`` metadata, see
:mod:`servicekit.contract`) drive the option validation here and chat's OpenAPI schemas, and
the local model server reads :class:`GenerationOptions` for the options it honours.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal, NotRequired, TypedDict, cast, get_args

from servicekit.contract import INT_LIMIT, Items, Length, NonBlank, PromptText, Range, fields_of, meta_of, unwrap
from servicekit.errors import InvalidRequest, PromptTooLong

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(get_args(Role))
MAX_MESSAGES = 1000
MAX_STOP_SEQUENCES = 16
MAX_TOOLS = 128
RATIO = Range(0, 1000)
PENALTY = Range(-2, 2)


class ChatMessage(TypedDict):
    role: Role
    content: NotRequired[str]
    thinking: NotRequired[str]  # a thinking model's earlier reasoning, sent back in a conversation
    # Ollama's shape: [{"function": {"name", "arguments"}}]
    tool_calls: NotRequired[Annotated[list[dict[str, Any]], Items(0, MAX_TOOLS)]]
    tool_name: NotRequired[str]  # on a "tool" message: which tool answered


class GenerationOptions(TypedDict, total=False):
    """The Ollama options we pass through; anything else is refused, not silently dropped."""

    temperature: Annotated[float, RATIO]
    top_p: Annotated[float, RATIO]
    top_k: int
    seed: int
    num_predict: int
    num_ctx: Annotated[int, Range(1, INT_LIMIT - 1)]
    stop: Annotated[list[Annotated[str, Length(1, 1000)]], Items(0, MAX_STOP_SEQUENCES)]
    repeat_penalty: Annotated[float, RATIO]
    frequency_penalty: Annotated[float, PENALTY]
    presence_penalty: Annotated[float, PENALTY]


# "json", or a JSON Schema the reply must follow (Ollama's `format`).
Format = Literal["json"] | dict[str, Any]
Think = bool | Literal["low", "medium", "high"]
KeepAlive = Annotated[str | float, Length(1, 32)]


class GenerationRequest(TypedDict):
    """Exactly one of ``prompt`` and ``messages``; ``tools`` only with ``messages``."""

    prompt: NotRequired[Annotated[str, NonBlank(), PromptText()]]
    messages: NotRequired[Annotated[list[ChatMessage], Items(1, MAX_MESSAGES)]]
    system: NotRequired[Annotated[str, PromptText()]]
    options: NotRequired[GenerationOptions]
    format: NotRequired[Format]
    think: NotRequired[Think]
    tools: NotRequired[Annotated[list[dict[str, Any]], Items(0, MAX_TOOLS)]]
    stream: NotRequired[bool]
    keep_alive: NotRequired[KeepAlive]


REQUEST_FIELDS: frozenset[str] = frozenset(GenerationRequest.__annotations__)
MESSAGE_FIELDS: frozenset[str] = frozenset(ChatMessage.__annotations__)
OPTION_FIELDS = fields_of(GenerationOptions)
OPTION_NAMES: frozenset[str] = frozenset(OPTION_FIELDS)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def unicode_text(value: str, name: str) -> str:
    """JSON can carry lone surrogates (\\ud800) that are not text and cannot be encoded again."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"'{name}' is not valid Unicode text (a lone surrogate).") from None
    return value


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string.")
    if not value.strip():
        raise InvalidRequest(f"'{name}' must not be empty.")
    return unicode_text(value, name)


def _objects(value: object, name: str, limit: int) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(item, dict) for item in value):
        raise InvalidRequest(f"'{name}' must be a list of at most {limit} objects.")
    return cast(list[dict[str, Any]], value)


def _message(index: int, item: object) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(item, dict) or "role" not in item or not set(item) <= MESSAGE_FIELDS:
        raise InvalidRequest(f"{where} must be an object with 'role' and any of {sorted(MESSAGE_FIELDS - {'role'})}.")
    role = item["role"]
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidRequest(f"{where}.role must be one of {sorted(ROLES)}.")
    message: ChatMessage = {"role": cast(Role, role)}
    for name in ("content", "thinking", "tool_name"):
        if name in item:
            if not isinstance(item[name], str):
                raise InvalidRequest(f"{where}.{name} must be a string.")
            message[name] = unicode_text(item[name], f"{where}.{name}")
    if "tool_calls" in item:
        message["tool_calls"] = _objects(item["tool_calls"], f"{where}.tool_calls", MAX_TOOLS)
    return message


def _messages(value: object) -> list[ChatMessage]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest('\'messages\' must be a non-empty list of {"role", "content"} objects.')
    if len(value) > MAX_MESSAGES:
        raise InvalidRequest(f"'messages' may hold at most {MAX_MESSAGES} messages.")
    return [_message(index, item) for index, item in enumerate(value)]


def _option(name: str, value: object) -> Any:
    """One option, checked against its declared type and limits."""
    kind, meta = OPTION_FIELDS[name]
    bounds: Range | None = meta_of(meta, Range)
    if kind is float:
        low, high = (bounds.minimum, bounds.maximum) if bounds else (-math.inf, math.inf)
        if not is_number(value) or not math.isfinite(cast(float, value)) or not low <= cast(float, value) <= high:
            raise InvalidRequest(f"options.{name} must be a number from {low:g} to {high:g}.")
        return value
    if kind is int:
        # JSON Schema counts 3.0 as an integer, and so do we.
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if not whole or isinstance(value, bool) or abs(cast(float, value)) >= INT_LIMIT:
            raise InvalidRequest(f"options.{name} must be a whole number below 2^31 in size.")
        if bounds and not bounds.minimum <= cast(float, value) <= bounds.maximum:
            raise InvalidRequest(f"options.{name} must be at least {bounds.minimum:g}.")
        return int(cast(float, value))
    # list[str]: the only other kind of option (stop)
    items: Items = meta_of(meta, Items)
    length: Length = meta_of(unwrap(get_args(kind)[0])[1], Length)
    texts = value if isinstance(value, list) and len(value) <= items.maximum else [None]
    if not all(isinstance(s, str) and length.minimum <= len(s) <= length.maximum for s in texts):
        raise InvalidRequest(
            f"options.{name} must be a list of at most {items.maximum} strings of {length.minimum} to "
            f"{length.maximum} characters."
        )
    return list(texts)


def parse_options(value: object) -> GenerationOptions:
    if not isinstance(value, dict):
        raise InvalidRequest("'options' must be an object.")
    unknown = set(value) - OPTION_NAMES
    if unknown:
        raise InvalidRequest(f"Unsupported options {sorted(unknown)}; allowed: {sorted(OPTION_NAMES)}.")
    return cast(GenerationOptions, {name: _option(name, option) for name, option in value.items()})


def parse_keep_alive(value: object) -> str | float:
    valid_number = is_number(value) and math.isfinite(cast(float, value))
    if not (isinstance(value, str) and 0 < len(value) <= 32) and not valid_number:
        raise InvalidRequest("'keep_alive' must be a duration string such as \"5m\" or a number of seconds.")
    return cast(str | float, value)


def _format(value: object) -> Format:
    if value != "json" and not isinstance(value, dict):
        raise InvalidRequest("'format' must be \"json\" or a JSON Schema object.")
    return cast(Format, value)


def _think(value: object) -> Think:
    if not isinstance(value, bool) and value not in ("low", "medium", "high"):
        raise InvalidRequest('\'think\' must be true, false, "low", "medium" or "high".')
    return value


def parse_generation_request(
    data: Mapping[str, Any],
    *,
    max_prompt_chars: int,
    allow_stream: bool = True,
    also_allowed: Collection[str] = (),
) -> GenerationRequest:
    """Validate a decoded JSON body; raise :class:`InvalidRequest` or :class:`PromptTooLong`."""
    allowed = (REQUEST_FIELDS if allow_stream else REQUEST_FIELDS - {"stream"}) | set(also_allowed)
    unknown = set(data) - allowed
    if unknown:
        raise InvalidRequest(f"Unknown fields {sorted(unknown)}; allowed: {sorted(allowed)}.")
    has_prompt, has_messages = "prompt" in data, "messages" in data
    if has_prompt == has_messages:
        raise InvalidRequest("Send exactly one of 'prompt' (a string) and 'messages' (a list).")

    request: GenerationRequest = {}
    if has_prompt:
        request["prompt"] = _text(data, "prompt")
        size = len(request["prompt"])
    else:
        request["messages"] = _messages(data["messages"])
        size = sum(len(m.get("content", "")) for m in request["messages"])
    if "system" in data:
        if not isinstance(data["system"], str):
            raise InvalidRequest("'system' must be a string.")
        request["system"] = unicode_text(data["system"], "system")
        size += len(data["system"])
    if size > max_prompt_chars:
        raise PromptTooLong(f"The prompt is {size} characters; the limit is {max_prompt_chars}.")
    if "options" in data:
        request["options"] = parse_options(data["options"])
    if "format" in data:
        request["format"] = _format(data["format"])
    if "think" in data:
        request["think"] = _think(data["think"])
    if "tools" in data:
        tools = _objects(data["tools"], "tools", MAX_TOOLS)
        if has_prompt:
            raise InvalidRequest("'tools' need 'messages' (a chat), not 'prompt'.")
        if tools:  # an empty list (the ollama client always sends one) means no tools
            request["tools"] = tools
    if "stream" in data:
        if not isinstance(data["stream"], bool):
            raise InvalidRequest("'stream' must be true or false.")
        request["stream"] = data["stream"]
    if "keep_alive" in data:
        request["keep_alive"] = parse_keep_alive(data["keep_alive"])
    return request

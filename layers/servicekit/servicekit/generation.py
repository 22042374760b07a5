"""The generation request both services accept, and its validation.

Chat validates every public request with :func:`parse_generation_request` before forwarding
anything; the runner validates again, because it is a service of its own with its own callers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Literal, NotRequired, TypedDict, cast, get_args

from servicekit.errors import InvalidRequest, PromptTooLong

Role = Literal["system", "user", "assistant"]
ROLES: frozenset[str] = frozenset(get_args(Role))


class ChatMessage(TypedDict):
    role: Role
    content: str


class GenerationOptions(TypedDict, total=False):
    """The Ollama options we pass through; anything else is refused, not silently dropped."""

    temperature: float
    top_p: float
    top_k: int
    seed: int
    num_predict: int
    num_ctx: int
    stop: list[str]
    repeat_penalty: float


class GenerationRequest(TypedDict):
    """Exactly one of ``prompt`` and ``messages``."""

    prompt: NotRequired[str]
    messages: NotRequired[list[ChatMessage]]
    system: NotRequired[str]
    options: NotRequired[GenerationOptions]
    stream: NotRequired[bool]
    keep_alive: NotRequired[str | int | float]


REQUEST_FIELDS: frozenset[str] = frozenset(GenerationRequest.__annotations__)
_FLOAT_OPTIONS = ("temperature", "top_p", "repeat_penalty")
_INT_OPTIONS = ("top_k", "seed", "num_predict", "num_ctx")
OPTION_NAMES: frozenset[str] = frozenset(GenerationOptions.__annotations__)
_INT_LIMIT = 2**31
MAX_MESSAGES = 1000
MAX_STOP_SEQUENCES = 16


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unicode(value: str, name: str) -> str:
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
    return _unicode(value, name)


def _messages(value: object) -> list[ChatMessage]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest('\'messages\' must be a non-empty list of {"role", "content"} objects.')
    if len(value) > MAX_MESSAGES:
        raise InvalidRequest(f"'messages' may hold at most {MAX_MESSAGES} messages.")
    messages: list[ChatMessage] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"role", "content"}:
            raise InvalidRequest(f"messages[{index}] must be an object with exactly 'role' and 'content'.")
        role, content = item["role"], item["content"]
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(f"messages[{index}].role must be one of {sorted(ROLES)}.")
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{index}].content must be a string.")
        messages.append({"role": cast(Role, role), "content": _unicode(content, f"messages[{index}].content")})
    return messages


def _options(value: object) -> GenerationOptions:
    if not isinstance(value, dict):
        raise InvalidRequest("'options' must be an object.")
    unknown = set(value) - OPTION_NAMES
    if unknown:
        raise InvalidRequest(f"Unsupported options {sorted(unknown)}; allowed: {sorted(OPTION_NAMES)}.")
    options: dict[str, Any] = {}
    for name in _FLOAT_OPTIONS:
        if name in value:
            number = value[name]
            if not _is_number(number) or not math.isfinite(number) or not 0 <= number <= 1000:
                raise InvalidRequest(f"options.{name} must be a number from 0 to 1000.")
            options[name] = number
    for name in _INT_OPTIONS:
        if name in value:
            number = value[name]
            # JSON Schema counts 3.0 as an integer, and so do we.
            whole = isinstance(number, int) or (isinstance(number, float) and number.is_integer())
            if not whole or isinstance(number, bool) or abs(number) >= _INT_LIMIT:
                raise InvalidRequest(f"options.{name} must be a whole number below 2^31 in size.")
            options[name] = int(number)
    if "num_ctx" in options and options["num_ctx"] < 1:
        raise InvalidRequest("options.num_ctx must be at least 1.")
    if "stop" in value:
        stop = value["stop"]
        if (
            not isinstance(stop, list)
            or len(stop) > MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and s for s in stop)
        ):
            raise InvalidRequest(f"options.stop must be a list of at most {MAX_STOP_SEQUENCES} non-empty strings.")
        options["stop"] = list(stop)
    return options  # type: ignore[return-value]


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
        size = sum(len(m["content"]) for m in request["messages"])
    if "system" in data:
        if not isinstance(data["system"], str):
            raise InvalidRequest("'system' must be a string.")
        request["system"] = _unicode(data["system"], "system")
        size += len(data["system"])
    if size > max_prompt_chars:
        raise PromptTooLong(f"The prompt is {size} characters; the limit is {max_prompt_chars}.")
    if "options" in data:
        request["options"] = _options(data["options"])
    if "stream" in data:
        if not isinstance(data["stream"], bool):
            raise InvalidRequest("'stream' must be true or false.")
        request["stream"] = data["stream"]
    if "keep_alive" in data:
        keep_alive = data["keep_alive"]
        valid_number = _is_number(keep_alive) and math.isfinite(keep_alive)
        if not (isinstance(keep_alive, str) and 0 < len(keep_alive) <= 32) and not valid_number:
            raise InvalidRequest("'keep_alive' must be a duration string such as \"5m\" or a number of seconds.")
        request["keep_alive"] = keep_alive
    return request

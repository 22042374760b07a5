"""Parsing Ollama's request bodies: model, messages, options, format, keep_alive and embedding input.

The options the model server accepts are derived from the one request contract,
:class:`servicekit.generation.GenerationOptions`: its annotations are read at import, so an option
added there is accepted here (and, once mapped, by the llama engine) with no second list to keep.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, get_args, get_origin, get_type_hints

from servicekit.generation import GenerationOptions as Options

from local.ollama.engine import Message, ResponseFormat
from local.ollama.errors import BadRequest

Check = Callable[[object], bool]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_for(hint: object) -> Check:
    """How a JSON value is checked against one annotation of GenerationOptions."""
    if hint is float:
        return _number
    if hint is int:
        return _whole
    if hint is str:
        return lambda value: isinstance(value, str)
    if hint is bool:
        return lambda value: isinstance(value, bool)
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        each = _check_for(item)
        return lambda value: isinstance(value, list) and all(each(v) for v in value)
    raise TypeError(f"GenerationOptions has an annotation the model server cannot check: {hint!r}")


OPTION_CHECKS: dict[str, Check] = {name: _check_for(hint) for name, hint in get_type_hints(Options).items()}


def parse_model(body: dict[str, Any], served: str) -> str:
    """The requested model, which must be the one served (``name`` and ``name:latest`` are the same)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required")
    if model not in (served, f"{served}:latest") and f"{model}:latest" != served:
        raise BadRequest(f"model '{model}' not found", status=404)
    return model


def parse_options(body: dict[str, Any]) -> Options:
    raw = body.get("options") or {}
    if not isinstance(raw, dict):
        raise BadRequest("options must be an object")
    options: dict[str, Any] = {}
    for key, value in raw.items():
        check = OPTION_CHECKS.get(key)
        if check is None:
            continue  # Ollama ignores options it does not know (with a warning in its log)
        if not check(value):
            raise BadRequest(f"option {key!r} has the wrong type")
        options[key] = value
    return options  # type: ignore[return-value]


def parse_messages(body: dict[str, Any], chat: bool) -> list[Message]:
    if chat:
        messages = body.get("messages", [])
        valid = isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content", ""), str)
            for m in messages
        )
        if not valid:
            raise BadRequest("messages must be a list of {role, content} objects")
        return [{"role": m["role"], "content": m.get("content", "")} for m in messages]
    prompt, system = body.get("prompt", ""), body.get("system")
    if not isinstance(prompt, str) or (system is not None and not isinstance(system, str)):
        raise BadRequest("prompt and system must be strings")
    messages_: list[Message] = [{"role": "system", "content": system}] if system else []
    return [*messages_, {"role": "user", "content": prompt}] if prompt else messages_


def parse_format(body: dict[str, Any]) -> ResponseFormat | None:
    """``"json"``, a JSON schema (an object), or nothing (absent, null or ``""``)."""
    fmt = body.get("format")
    if fmt is None or fmt == "":
        return None
    if fmt == "json" or isinstance(fmt, dict):
        return fmt  # type: ignore[no-any-return]
    raise BadRequest(f'invalid format: {fmt!r}; use "json" or a JSON schema')


DEFAULT_KEEP_ALIVE_S = 300.0  # Ollama's default: 5m
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms))+$")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_keep_alive(body: dict[str, Any]) -> float:
    """Seconds the model stays loaded after this request; negative means for ever, 0 unloads now.

    As Ollama: a number is seconds; a string is a Go duration ("5m", "1h30m", "10s") or a number.
    """
    value = body.get("keep_alive")
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if _number(value):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("-")
        try:
            return sign * float(text)
        except ValueError:
            pass
        if _DURATION.match(text):
            return sign * sum(float(n) * _UNIT_S[unit] for n, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text))
    raise BadRequest(f"invalid keep_alive: {value!r}")


def parse_embed_input(body: dict[str, Any], legacy: bool) -> list[str]:
    """``input`` (a string or a list of strings) for /api/embed, ``prompt`` for /api/embeddings."""
    if legacy:
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise BadRequest("prompt must be a string")
        return [prompt] if prompt else []
    value = body.get("input", [])
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise BadRequest("input must be a string or a list of strings")


def parse_truncate(body: dict[str, Any]) -> bool:
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise BadRequest("truncate must be true or false")
    return truncate

"""The OpenAI API's schemas in chat's OpenAPI document (its paths are in :mod:`chat.openapi_dialects`).

OpenAI's sampling parameters are Ollama options under the same names, so their limits are the
contract's; the rest (messages with content parts, response_format, ...) is written here with
the limits the translation in :mod:`chat.dialects.openai` enforces.
"""

from __future__ import annotations

from typing import Any

from servicekit.contract import NON_BLANK_PATTERN
from servicekit.embedding import MAX_INPUTS
from servicekit.generation import MAX_MESSAGES, MAX_TOOLS

from chat.dialects.openai import SAMPLING
from chat.openapi_schemas import contract_components, nullable
from chat.settings import Settings


def openai_requests(settings: Settings, internal: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    # OpenAI's sampling parameters are Ollama options under the same names: their limits are the contract's.
    option = contract_components(settings)["Options"]["properties"]
    tokens = nullable(option["num_predict"])
    stop_text = option["stop"]["items"]
    sampling = {
        **{name: nullable(option[name]) for name in SAMPLING.values()},
        "max_tokens": tokens,
        "stop": {"anyOf": [stop_text, option["stop"], {"type": "null"}]},
        "n": {"const": 1, "description": "One generation at a time: one choice."},
        "stream": {"type": "boolean", "default": False},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "user": {"type": "string"},
        "model": model,
    }
    content = {
        "anyOf": [
            {"type": "string", "maxLength": settings.max_prompt_chars},
            {"type": "null"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "text"],
                    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                },
            },
        ]
    }
    call = {
        "type": "object",
        "required": ["function"],
        "properties": {
            "function": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
            }
        },
    }
    message = {
        "type": "object",
        "additionalProperties": False,
        "required": ["role"],
        "properties": {
            "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": content,
            "name": {"type": "string"},
            "tool_call_id": {"type": "string"},
            "tool_calls": {"type": "array", "maxItems": MAX_TOOLS, "items": call},
        },
    }
    response_format = {
        "anyOf": [
            {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
            {
                "type": "object",
                "required": ["type", "json_schema"],
                "properties": {
                    "type": {"const": "json_schema"},
                    "json_schema": {"type": "object", "properties": {"schema": {"type": "object"}}},
                },
            },
            {"type": "null"},
        ]
    }
    text = {"type": "string", "minLength": 1, "pattern": NON_BLANK_PATTERN, "maxLength": settings.max_prompt_chars}
    embed_text = {"type": "string", "minLength": 1, "maxLength": settings.max_prompt_chars}
    return {
        "ChatCompletionRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["model", "messages"],
            "properties": {
                **sampling,
                "messages": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": message},
                "max_completion_tokens": tokens,
                "response_format": response_format,
                "tools": internal["tools"],
                "tool_choice": {"enum": ["auto", "none"]},
                "reasoning_effort": {"enum": ["none", "low", "medium", "high"]},
                "logprobs": {"enum": [False, None]},
                "metadata": {"type": "object"},
                "store": {"type": "boolean"},
                "parallel_tool_calls": {"type": "boolean"},
            },
        },
        "CompletionRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["model", "prompt"],
            "properties": {
                **sampling,
                "prompt": {"anyOf": [text, {"type": "array", "minItems": 1, "maxItems": 1, "items": text}]},
                "echo": {"const": False},
                "logprobs": {"enum": [False, None]},
                "suffix": {"enum": ["", None]},
            },
        },
        "EmbeddingRequestOpenAI": {
            "type": "object",
            "additionalProperties": False,
            "required": ["model", "input"],
            "properties": {
                "model": model,
                "input": {
                    "anyOf": [embed_text, {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": embed_text}]
                },
                "encoding_format": {"enum": ["float", "base64"]},
                "dimensions": {"type": "integer", "minimum": 1, "maximum": 65536},
                "user": {"type": "string"},
            },
        },
    }


def openai_replies() -> dict[str, Any]:
    usage = {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }
    head = {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
    }
    finish = {"enum": ["stop", "length", "tool_calls"]}
    model = {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    }

    def completion(field: str, schema: dict[str, Any]) -> dict[str, Any]:
        """A (chat or text) completion: its choices carry ``field``."""
        return {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {
                **head,
                "usage": usage,
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", field, "finish_reason"],
                        "properties": {"finish_reason": finish, field: schema},
                    },
                },
            },
        }

    return {
        "ChatCompletion": completion("message", {"type": "object"}),
        "TextCompletion": completion("text", {"type": "string"}),
        "EmbeddingList": {
            "type": "object",
            "required": ["object", "data", "model", "usage"],
            "properties": {
                "object": {"const": "list"},
                "model": {"type": "string"},
                "data": {"type": "array", "items": {"type": "object", "required": ["embedding", "index"]}},
                "usage": {"type": "object"},
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": model}},
        },
        "OpenAIModel": model,
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
    }

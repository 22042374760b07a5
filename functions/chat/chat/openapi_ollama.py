"""The Ollama API's schemas in chat's OpenAPI document (its paths are in :mod:`chat.openapi_dialects`).

The fields that are the internal contract's own (messages, options, format, think, tools,
keep_alive) come from it; Ollama's request shapes pick them by the names the translation in
:mod:`chat.dialects.ollama` accepts.
"""

from __future__ import annotations

from typing import Any

from servicekit.embedding import MAX_INPUTS

from chat.dialects.ollama import CHAT_FIELDS, GENERATE_FIELDS
from chat.openapi_schemas import contract_components, nullable
from chat.settings import Settings


def ollama_requests(settings: Settings, internal: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    fields = {
        **internal,
        "model": model,
        "stream": {"type": "boolean", "default": True},
        "format": {"anyOf": [{"enum": ["", "json"]}, {"type": "object"}]},
    }
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_prompt_chars}
    embed_input = {"anyOf": [text, {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": text}]}
    # Ollama reads a null option as not set (LangChain sends them): each option may be null here.
    options = contract_components(settings)["Options"]
    # A null option is "not set" in Ollama's API, whatever its name (LangChain sends every option it
    # knows, mostly null): any name may be null; only the contract's options may have a value.
    fields["options"] = {
        **options,
        "properties": {k: nullable(v) for k, v in options["properties"].items()},
        "additionalProperties": {"type": "null"},
    }
    common = {name: fields[name] for name in ("model", "options", "keep_alive")}
    return {
        "OllamaChatRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["messages"],
            "properties": {name: fields[name] for name in sorted(CHAT_FIELDS)},
        },
        "OllamaGenerateRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt"],
            "properties": {name: fields[name] for name in sorted(GENERATE_FIELDS)},
        },
        "OllamaEmbedRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["input"],
            "properties": {
                **common,
                "input": embed_input,
                "truncate": {"type": "boolean"},
                "dimensions": {"type": "integer", "minimum": 1, "maximum": 65536},
            },
        },
        "OllamaEmbeddingsRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt"],
            "properties": {**common, "prompt": text},
        },
        "OllamaShowRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"model": model, "name": model, "verbose": {"type": "boolean"}},
        },
    }


def ollama_replies() -> dict[str, Any]:
    closing = {
        "done": {"type": "boolean"},
        "done_reason": {"type": "string"},
        "total_duration": {"type": "integer"},
        "load_duration": {"type": "integer"},
        "prompt_eval_count": {"type": "integer"},
        "prompt_eval_duration": {"type": "integer"},
        "eval_count": {"type": "integer"},
        "eval_duration": {"type": "integer"},
    }
    head = {"model": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}}
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"const": "assistant"},
            "content": {"type": "string"},
            "thinking": {"type": "string"},
            "tool_calls": {"type": "array"},
        },
    }
    model_entry = {
        "type": "object",
        "required": ["name", "model"],
        "properties": {"name": {"type": "string"}, "model": {"type": "string"}},
    }
    return {
        "OllamaChatResponse": {
            "type": "object",
            "required": ["model", "created_at", "message", "done"],
            "properties": {**head, "message": message, **closing},
        },
        "OllamaGenerateResponse": {
            "type": "object",
            "required": ["model", "created_at", "response", "done"],
            "properties": {**head, "response": {"type": "string"}, "thinking": {"type": "string"}, **closing},
        },
        "OllamaEmbedResponse": {
            "type": "object",
            "required": ["model", "embeddings"],
            "properties": {
                "model": {"type": "string"},
                "embeddings": {"type": "array", "items": {"type": "array"}},
                "total_duration": {"type": "integer"},
                "load_duration": {"type": "integer"},
                "prompt_eval_count": {"type": "integer"},
            },
        },
        "OllamaEmbeddingsResponse": {
            "type": "object",
            "required": ["embedding"],
            "properties": {"embedding": {"type": "array", "items": {"type": "number"}}},
        },
        "OllamaModels": {
            "type": "object",
            "required": ["models"],
            "properties": {"models": {"type": "array", "items": model_entry}},
        },
        "OllamaShowResponse": {"type": "object"},
        "OllamaVersion": {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}},
        "OllamaError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    }

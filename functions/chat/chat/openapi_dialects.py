"""The Ollama and OpenAI parts of chat's OpenAPI document: their paths and their component schemas.

Request fields that are the internal contract's own (messages, options, format, think, tools,
keep_alive, embedding input) are taken from it (:func:`chat.openapi_schemas.contract_schema`);
what is the dialect's alone (OpenAI's sampling names, response_format, ...) is written here,
with the limits the translation in :mod:`chat.dialects` enforces.
"""

from __future__ import annotations

from typing import Any

from servicekit.embedding import MAX_INPUTS
from servicekit.generation import MAX_MESSAGES, MAX_TOOLS

from chat.dialects.ollama import CHAT_FIELDS, GENERATE_FIELDS
from chat.dialects.openai import SAMPLING
from chat.openapi_schemas import contract_components, generation_properties, model_names
from chat.settings import Settings

ERRORS = {
    "400": "A parameter this gateway does not offer (`unsupported_parameter`), or the body is not JSON.",
    "403": "Model management is refused here (`management_refused`).",
    "404": "The model is not allowed here or Ollama does not have it (`model_not_found`).",
    "408": "The body did not arrive in time.",
    "413": "The body is larger than MAX_BODY_BYTES.",
    "422": "Not a valid request, or its text is longer than MAX_PROMPT_CHARS.",
    "502": "The runner or Ollama failed or cannot be reached.",
    "503": "The one generation slot is busy for longer than the request may wait; see `Retry-After`.",
    "504": "Ollama or the runner went silent past its deadline.",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Whole seconds."}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(error_schema: str) -> dict[str, Any]:
    responses: dict[str, Any] = {
        status: {"description": text, "content": {"application/json": {"schema": _ref(error_schema)}}}
        for status, text in ERRORS.items()
    }
    responses["503"]["headers"] = RETRY_AFTER
    return responses


def _operation(
    operation_id: str, summary: str, error_schema: str, ok: dict[str, Any], body: str | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {"200": {"description": "OK.", "content": ok}, **_errors(error_schema)},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return operation


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(schema)}}


def dialect_paths() -> dict[str, Any]:
    ndjson = {"application/x-ndjson": {"schema": {"type": "string"}}}
    # One event: its data is a JSON chunk, or "[DONE]" at the end.
    event = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
    sse = {"text/event-stream": {"schema": event}}
    refused = {
        "operationId": "",
        "summary": "Refused: models are managed on the Ollama host, not through this endpoint.",
        "responses": {"403": {"description": "Refused.", "content": _json("OllamaError")}},
    }

    def management(method: str, name: str) -> dict[str, Any]:
        return {method: {**refused, "operationId": f"ollama{name}"}}

    return {
        "/": {
            "get": {
                "operationId": "ollamaRoot",
                "summary": 'Ollama\'s probe: "Ollama is running" (HEAD too).',
                "responses": {
                    "200": {"description": "Running.", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/api/chat": {
            "post": _operation(
                "ollamaChat",
                "Ollama's chat; streamed (NDJSON) unless `stream: false`.",
                "OllamaError",
                {**_json("OllamaChatResponse"), **ndjson},
                "OllamaChatRequest",
            )
        },
        "/api/generate": {
            "post": _operation(
                "ollamaGenerate",
                "Ollama's generate; streamed unless `stream: false`.",
                "OllamaError",
                {**_json("OllamaGenerateResponse"), **ndjson},
                "OllamaGenerateRequest",
            )
        },
        "/api/embed": {
            "post": _operation(
                "ollamaEmbed",
                "Embeddings (takes the generation slot).",
                "OllamaError",
                _json("OllamaEmbedResponse"),
                "OllamaEmbedRequest",
            )
        },
        "/api/embeddings": {
            "post": _operation(
                "ollamaEmbeddings",
                "Ollama's older embedding endpoint: one prompt.",
                "OllamaError",
                _json("OllamaEmbeddingsResponse"),
                "OllamaEmbeddingsRequest",
            )
        },
        "/api/tags": {
            "get": _operation(
                "ollamaTags", "The allowed models Ollama has (never queued).", "OllamaError", _json("OllamaModels")
            )
        },
        "/api/show": {
            "post": _operation(
                "ollamaShow",
                "A model's details (never queued).",
                "OllamaError",
                _json("OllamaShowResponse"),
                "OllamaShowRequest",
            )
        },
        "/api/ps": {
            "get": _operation(
                "ollamaPs", "The allowed models Ollama has loaded (never queued).", "OllamaError", _json("OllamaModels")
            )
        },
        "/api/version": {
            "get": _operation(
                "ollamaVersion", "Ollama's version (never queued).", "OllamaError", _json("OllamaVersion")
            )
        },
        "/api/pull": management("post", "Pull"),
        "/api/push": management("post", "Push"),
        "/api/create": management("post", "Create"),
        "/api/copy": management("post", "Copy"),
        "/api/delete": management("delete", "Delete"),
        "/api/blobs/{digest}": {
            "parameters": [{"name": "digest", "in": "path", "required": True, "schema": {"type": "string"}}],
            **management("post", "PushBlob"),
            **management("head", "CheckBlob"),
        },
        "/v1/chat/completions": {
            "post": _operation(
                "openaiChatCompletions",
                "OpenAI chat completions; SSE with `stream: true`.",
                "OpenAIError",
                {**_json("ChatCompletion"), **sse},
                "ChatCompletionRequest",
            )
        },
        "/v1/completions": {
            "post": _operation(
                "openaiCompletions",
                "OpenAI (legacy) completions.",
                "OpenAIError",
                {**_json("TextCompletion"), **sse},
                "CompletionRequest",
            )
        },
        "/v1/embeddings": {
            "post": _operation(
                "openaiEmbeddings",
                "OpenAI embeddings (takes the generation slot).",
                "OpenAIError",
                _json("EmbeddingList"),
                "EmbeddingRequestOpenAI",
            )
        },
        "/v1/models": {
            "get": _operation(
                "openaiModels", "The allowed models Ollama has (never queued).", "OpenAIError", _json("ModelList")
            )
        },
        "/v1/models/{model}": {
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": _operation("openaiModel", "One model (never queued).", "OpenAIError", _json("OpenAIModel")),
        },
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ollama_requests(settings: Settings, internal: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
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
    fields["options"] = {**options, "properties": {k: _nullable(v) for k, v in options["properties"].items()}}
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


def _ollama_replies() -> dict[str, Any]:
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


def _openai_requests(settings: Settings, internal: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    # OpenAI's sampling parameters are Ollama options under the same names: their limits are the contract's.
    option = contract_components(settings)["Options"]["properties"]
    tokens = _nullable(option["num_predict"])
    stop_text = option["stop"]["items"]
    sampling = {
        **{name: _nullable(option[name]) for name in SAMPLING.values()},
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
    text = {"type": "string", "minLength": 1, "pattern": "\\S", "maxLength": settings.max_prompt_chars}
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


def _openai_replies() -> dict[str, Any]:
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
    return {
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {
                **head,
                "usage": usage,
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "message", "finish_reason"],
                        "properties": {"finish_reason": finish, "message": {"type": "object"}},
                    },
                },
            },
        },
        "TextCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {
                **head,
                "usage": usage,
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "text", "finish_reason"],
                        "properties": {"finish_reason": finish, "text": {"type": "string"}},
                    },
                },
            },
        },
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


def dialect_components(settings: Settings) -> dict[str, Any]:
    internal = generation_properties(settings)
    model = {"enum": model_names(settings)}
    return {
        **_ollama_requests(settings, internal, model),
        **_ollama_replies(),
        **_openai_requests(settings, internal, model),
        **_openai_replies(),
    }

"""The Ollama and OpenAI parts of chat's OpenAPI document: their paths, and their schemas
(:mod:`chat.openapi_ollama`, :mod:`chat.openapi_openai`).
"""

from __future__ import annotations

from typing import Any

from chat.openapi_ollama import ollama_replies, ollama_requests
from chat.openapi_openai import openai_replies, openai_requests
from chat.openapi_schemas import generation_properties, model_names
from chat.settings import Settings

# Ollama's probes answer anyone; so do the refusals of its management endpoints (403 either way).
PUBLIC_PATHS = frozenset(
    {"/", "/api/version", "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs/{digest}"}
)
ERRORS = {
    "400": "A parameter this gateway does not offer (`unsupported_parameter`), or the body is not JSON.",
    "401": "No API key where one is needed, or one that is not valid (`unauthorized`); see `WWW-Authenticate`.",
    "403": "The caller's API key does not allow this model (`model_forbidden`).",
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
                "summary": 'Ollama\'s probe: "Ollama is running" (HEAD too); the chat page for `Accept: text/html`.',
                "responses": {
                    "200": {
                        "description": "Running (or the page).",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    }
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


def dialect_components(settings: Settings) -> dict[str, Any]:
    internal = generation_properties(settings)
    model = {"enum": model_names(settings)}
    return {
        **ollama_requests(settings, internal, model),
        **ollama_replies(),
        **openai_requests(settings, internal, model),
        **openai_replies(),
    }

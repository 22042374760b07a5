"""The OpenAPI 3.1 document of chat's public API, built from the settings it enforces."""

from __future__ import annotations

from typing import Any

from chat.openapi_dialects import PUBLIC_PATHS as DIALECT_PUBLIC_PATHS
from chat.openapi_dialects import dialect_components, dialect_paths
from chat.openapi_schemas import component_schemas
from chat.settings import Settings

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/v1/config", *DIALECT_PUBLIC_PATHS})

ERROR_STATUSES = {
    "400": "The body is not JSON (`invalid_json`).",
    "401": "No API key where one is needed, or one that is not valid (`unauthorized`); see `WWW-Authenticate`.",
    "403": "The caller's API key does not allow this model (`model_forbidden`).",
    "404": "The model is not allowed here or Ollama does not have it (`model_not_found`).",
    "408": "The body did not arrive in time (`body_read_timeout`).",
    "413": "The body is larger than MAX_BODY_BYTES (`body_too_large`).",
    "422": "The body is JSON but not a valid request (`invalid_request`), or its text is longer than "
    "MAX_PROMPT_CHARS (`prompt_too_long`).",
    "429": "This caller already has its `max_waiting` requests waiting (`too_many_requests`); see `Retry-After` "
    "and the body's `queue_position` / `queue_depth`.",
    "502": "The runner or Ollama failed or cannot be reached (`upstream_error`, `upstream_unavailable`).",
    "503": "The host's queue is full (`queue_full`, MAX_QUEUE waiting), the request waited QUEUE_TIMEOUT_S "
    "(`queue_timeout`), or on AWS the runner stayed busy (`runner_busy`); see `Retry-After` and the body's "
    "`queue_position` / `queue_depth`.",
    "504": "Ollama or the runner went silent past its deadline (`upstream_timeout`); on AWS, the generation "
    "did not finish within the request's time limit and was stopped (`deadline_exceeded`).",
}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    request_id = {"X-Request-ID": {"schema": {"type": "string"}, "description": "Echoed or generated."}}
    chat_errors = {status: _error(text) for status, text in ERROR_STATUSES.items()}
    retry_after = {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Whole seconds: the expected wait of the place the request would have had.",
        }
    }
    chat_errors["429"]["headers"] = retry_after
    chat_errors["503"]["headers"] = retry_after
    health = {
        "200": {
            "description": "Ready.",
            "content": {"application/json": {"schema": {"type": "object", "required": ["status"]}}},
        }
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "serverless-ollama-chat",
            "version": "1.0.0",
            "description": "A chat endpoint in front of Ollama that runs one generation at a time.",
        },
        "paths": {
            "/chat": {
                "post": {
                    "operationId": "chat",
                    "summary": "Generate a reply (whole, or streamed with `stream: true`).",
                    "parameters": [
                        {
                            "name": "X-Request-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Echoed back and passed on; a value that is not 1-128 characters of "
                            "`A-Z a-z 0-9 . _ : -` is replaced by a generated id (never refused).",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "The reply; streamed as NDJSON, or as Server-Sent Events when the "
                            "request accepts `text/event-stream`.",
                            "headers": {
                                **request_id,
                                "X-Queue-Position": {
                                    "schema": {"type": "string"},
                                    "description": "Where the request stood when it joined the queue (0: it ran at "
                                    "once, 1: next). Streams send it with the status line, before their turn.",
                                },
                                "X-Queue-Wait-Ms": {
                                    "schema": {"type": "string"},
                                    "description": "How long it waited for the slot (whole replies only).",
                                },
                            },
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ChatResponse"}},
                                "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/StreamLine"}},
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        **chat_errors,
                    },
                }
            },
            "/v1/jobs": {
                "get": {
                    "operationId": "listJobs",
                    "summary": "The caller's jobs, newest first, a page at a time.",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                            "description": "`next_after` of the previous page.",
                        },
                    ],
                    "responses": {
                        "200": _json("A page of the caller's jobs.", "JobList"),
                        "401": chat_errors["401"],
                        "422": _error("`limit` or `after` is not valid (`invalid_request`)."),
                    },
                },
                "post": {
                    "operationId": "createJob",
                    "summary": "Queue a generation; poll it with GET /v1/jobs/{id}.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "The same key within 24 h returns the same job.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
                    },
                    "responses": {
                        "202": {
                            "description": "Queued (or, with a known Idempotency-Key, the existing job).",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobCreated"}}},
                        },
                        **{k: v for k, v in chat_errors.items() if k != "504"},
                        "422": _error("Not a valid request, or an Idempotency-Key reused with another body."),
                    },
                },
            },
            "/v1/jobs/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {
                    "operationId": "getJob",
                    "summary": "A job's status and (partial) response.",
                    "responses": {
                        "200": _json("The job.", "Job"),
                        "401": chat_errors["401"],
                        "404": _error("No such job of this caller, or it is past its 24 h lifetime (`job_not_found`)."),
                    },
                },
                "delete": {
                    "operationId": "cancelJob",
                    "summary": "Cancel a queued or running job.",
                    "responses": {
                        "200": _json("Cancelled.", "Job"),
                        "401": chat_errors["401"],
                        "404": _error("No such job of this caller (`job_not_found`)."),
                        "409": _error("The job has already finished (`job_finished`)."),
                    },
                },
            },
            "/healthz": {
                "get": {"operationId": "healthz", "summary": "Liveness (no upstream call).", "responses": health}
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: the runner and Ollama answer.",
                    "responses": {**health, "503": _error("The runner or Ollama is not ready (`not_ready`).")},
                }
            },
            "/v1/config": {
                "get": {
                    "operationId": "pageConfig",
                    "summary": "What the chat page adapts to: stream from `/chat`, or poll the jobs API.",
                    "responses": {"200": _json("The capabilities.", "PageConfig")},
                }
            },
            **dialect_paths(),
        },
        "components": {
            "schemas": {**component_schemas(settings), **dialect_components(settings)},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key from `python -m chat.keys`."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
    # Every route but the probes and this document needs a caller (unless AUTH lets one go without).
    for path, operations in document["paths"].items():
        if path not in PUBLIC_PATHS:
            for operation in operations.values():
                if isinstance(operation, dict) and "responses" in operation:
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return document

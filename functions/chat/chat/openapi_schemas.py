"""The component schemas of chat's OpenAPI document: the request, reply, stream, job and error shapes."""

from __future__ import annotations

from typing import Any

from servicekit.generation import MAX_MESSAGES, MAX_STOP_SEQUENCES, ROLES

from chat.settings import Settings

INT32 = {"type": "integer", "minimum": -(2**31) + 1, "maximum": 2**31 - 1}
RATIO = {"type": "number", "minimum": 0, "maximum": 1000}
ERROR_CODES = [
    "invalid_json", "invalid_request", "body_too_large", "prompt_too_long", "body_read_timeout",
    "model_not_found", "not_found", "method_not_allowed", "queue_full", "queue_timeout", "runner_busy",
    "not_ready", "upstream_error", "upstream_unavailable", "upstream_timeout", "deadline_exceeded", "internal_error",
    "job_not_found", "job_finished", "idempotency_conflict", "unauthorized", "model_forbidden", "state_busy",
    "state_error", "too_many_requests",
]  # fmt: skip
JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "expired"]


def chat_request_properties(settings: Settings, text: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": text,
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_MESSAGES,
            "items": {"$ref": "#/components/schemas/ChatMessage"},
        },
        "model": {"enum": list(settings.allowed_models), "default": settings.default_model},
        "system": {"type": "string", "maxLength": settings.max_prompt_chars},
        "options": {"$ref": "#/components/schemas/Options"},
        "stream": {"type": "boolean", "default": False},
        "keep_alive": {"type": ["string", "number"], "minLength": 1, "maxLength": 32},
    }


def component_schemas(settings: Settings) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_prompt_chars, "pattern": "\\S"}
    usage = {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens"],
        "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}},
    }
    timings = {
        "type": "object",
        "required": ["queue_ms", "total_ms", "load_ms", "tokens_per_s"],
        "properties": {
            "queue_ms": {"type": "number", "description": "Time spent waiting for the generation slot."},
            "total_ms": {"type": "number", "description": "Ollama's total_duration."},
            "load_ms": {"type": "number", "description": "Ollama's load_duration."},
            "tokens_per_s": {"type": ["number", "null"]},
        },
    }
    return {
        "ChatMessage": {
            "type": "object",
            "additionalProperties": False,
            "required": ["role", "content"],
            "properties": {"role": {"enum": sorted(ROLES)}, "content": {"type": "string"}},
        },
        "Options": {
            "type": "object",
            "additionalProperties": False,
            "description": "Ollama options passed through; any other option is refused.",
            "properties": {
                "temperature": RATIO,
                "top_p": RATIO,
                "repeat_penalty": RATIO,
                "top_k": INT32,
                "seed": INT32,
                "num_predict": INT32,
                "num_ctx": {**INT32, "minimum": 1},
                "stop": {
                    "type": "array",
                    "maxItems": MAX_STOP_SEQUENCES,
                    "items": {"type": "string", "minLength": 1},
                },
            },
        },
        "ChatRequest": {
            "type": "object",
            "additionalProperties": False,
            "description": "Exactly one of `prompt` and `messages`. The whole text (prompt or message "
            f"contents, plus system) may hold at most {settings.max_prompt_chars} characters.",
            "oneOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
            "properties": chat_request_properties(settings, text),
        },
        "ChatResponse": {
            "type": "object",
            "required": ["response", "model", "done_reason", "usage", "timings"],
            "properties": {
                "response": {"type": "string"},
                "model": {"type": "string"},
                "done_reason": {"type": "string"},
                "usage": usage,
                "timings": timings,
            },
        },
        "StreamLine": {
            "description": "One line of a stream: where it waits (`queued`, SSE `event: queued`: when the "
            "position changes, at least every 5 s, and position 0 when it starts), a chunk, the final summary, or "
            "an error that ends it.",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["queued"],
                    "properties": {
                        "queued": {
                            "type": "object",
                            "required": ["position", "eta_s"],
                            "properties": {
                                "position": {"type": "integer", "minimum": 0, "description": "0 = running, 1 = next"},
                                "eta_s": {"type": "number", "minimum": 0, "description": "Expected wait, seconds."},
                            },
                        }
                    },
                },
                {"type": "object", "required": ["response"], "properties": {"response": {"type": "string"}}},
                {
                    "type": "object",
                    "required": ["done", "done_reason", "usage", "timings"],
                    "properties": {
                        "done": {"const": True},
                        "done_reason": {"type": "string"},
                        "usage": usage,
                        "timings": timings,
                    },
                },
                {"$ref": "#/components/schemas/Error"},
            ],
        },
        "JobRequest": {
            "description": "The same body as /chat, without `stream`.",
            "type": "object",
            "additionalProperties": False,
            "oneOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
            "properties": {k: v for k, v in chat_request_properties(settings, text).items() if k != "stream"},
        },
        "JobList": {
            "type": "object",
            "required": ["jobs", "next_after"],
            "properties": {
                "jobs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "status", "created_at"],
                        "properties": {
                            "id": {"type": "string"},
                            "status": {"type": "string"},
                            "created_at": {"type": "string", "format": "date-time"},
                        },
                    },
                },
                "next_after": {"type": ["string", "null"]},
            },
        },
        "JobCreated": {
            "type": "object",
            "required": ["id", "status", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "status": {"enum": JOB_STATUSES},
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "Job": {
            "type": "object",
            "required": [
                "id",
                "status",
                "model",
                "created_at",
                "started_at",
                "finished_at",
                "response",
                "usage",
                "timings",
                "error",
                "queue_position",
            ],
            "properties": {
                "id": {"type": "string"},
                "status": {"enum": JOB_STATUSES},
                "model": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": {"type": ["string", "null"], "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"},
                "response": {"type": "string", "description": "Partial while running, final once succeeded."},
                "usage": {"oneOf": [usage, {"type": "null"}]},
                "timings": {"oneOf": [timings, {"type": "null"}]},
                "error": {"type": ["object", "null"]},
                "queue_position": {
                    "type": ["integer", "null"],
                    "description": "Where a queued job waits in the host's queue now (1 = next); null once it runs.",
                },
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "request_id"],
                    "properties": {
                        "code": {"enum": ERROR_CODES},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"},
                        "retry_after_s": {"type": "integer", "minimum": 1},
                        "queue_position": {
                            "type": "integer",
                            "minimum": 1,
                            "description": "Where the refused request would have stood (429, 503).",
                        },
                        "queue_depth": {"type": "integer", "minimum": 0, "description": "Requests waiting."},
                    },
                }
            },
        },
    }

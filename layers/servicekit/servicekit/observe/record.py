"""The request record: one per request, filled in by the middleware and the endpoints, read by the sinks.

The middleware creates it before the app runs and owns status, bytes and duration; endpoints
add what only they know (the model, the wait for the slot, the generation's numbers) with
:func:`record_of`. Only the service that talked to Ollama sets ``generated_here``, so a
generation is counted once however many hops it crossed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

_STATE_KEY = "request_record"
ANONYMOUS = "anonymous"


@dataclass(slots=True)
class RequestRecord:
    service: str
    method: str
    path: str
    request_id: str = ""
    route: str = ""  # the route's template (/v1/jobs/{job_id}), never the raw path: bounded labels
    caller: str = ""  # the caller's name (a key's name, or an address when auth is off)
    caller_keyed: bool = False  # named by an API key: the only names metrics use as labels
    model: str = ""
    status: int = 0
    error_code: str = ""
    stream: bool = False
    queue_ms: float | None = None
    generation_ms: float | None = None
    first_token_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_per_s: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    duration_ms: float = 0.0
    generated_here: bool = False  # this service ran the generation at Ollama (counted once)
    prompt: str | None = None  # kept only when LOG_CONTENT=1
    answer: str | None = None

    def note_generation(self, model: str, final: Mapping[str, Any], queue_ms: float) -> None:
        """Ollama's final chunk, read once: tokens, durations (ns → ms) and speed."""
        self.model = model
        self.queue_ms = round(queue_ms, 3)
        self.tokens_in = int(final.get("prompt_eval_count", 0))
        self.tokens_out = int(final.get("eval_count", 0))
        self.generation_ms = round(int(final.get("total_duration", 0)) / 1e6, 3)
        # Ollama's own clock: loading plus prompt evaluation is what precedes the first token.
        self.first_token_ms = round(
            (int(final.get("load_duration", 0)) + int(final.get("prompt_eval_duration", 0))) / 1e6, 3
        )
        eval_ns = int(final.get("eval_duration", 0))
        self.tokens_per_s = round(self.tokens_out / (eval_ns / 1e9), 2) if eval_ns else None
        self.generated_here = True

    def note_reply(self, model: str, reply: dict[str, Any]) -> None:
        """What a relayed reply says (chat): usage and timings, without counting the generation again."""
        self.model = model
        usage = reply.get("usage")
        if isinstance(usage, dict):
            self.tokens_in = _int_or_none(usage.get("prompt_tokens"))
            self.tokens_out = _int_or_none(usage.get("completion_tokens"))
        timings = reply.get("timings")
        if isinstance(timings, dict):
            self.queue_ms = _float_or_none(timings.get("queue_ms"))
            self.generation_ms = _float_or_none(timings.get("total_ms"))
            self.tokens_per_s = _float_or_none(timings.get("tokens_per_s"))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def start_record(scope: Scope, record: RequestRecord) -> None:
    scope.setdefault("state", {})[_STATE_KEY] = record


def record_of(scope: Scope) -> RequestRecord:
    """This request's record; outside the middleware (a bare app in a test) a detached one."""
    state: dict[str, Any] = scope.setdefault("state", {})
    record = state.get(_STATE_KEY)
    if not isinstance(record, RequestRecord):
        record = RequestRecord(service="", method=scope.get("method", ""), path=scope.get("path", ""))
        state[_STATE_KEY] = record
    return record


def note_error_code(scope: Scope, code: str) -> None:
    """What the error handler answered with (the middleware sees only the status)."""
    record_of(scope).error_code = code

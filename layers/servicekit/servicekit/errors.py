"""The exception tree shared by both services, and its one mapping to HTTP.

::

    ServiceError                      500 internal_error
    ├── ClientError                   4xx: the request is wrong; retrying it unchanged will fail again
    │   ├── Unauthorized              401 unauthorized + WWW-Authenticate: Bearer
    │   ├── ModelForbidden            403 model_forbidden: the caller's key does not allow this model
    │   ├── Forbidden                 403 forbidden: the caller may not use this route (/metrics)
    │   ├── InvalidJSON               400 invalid_json
    │   ├── InvalidRequest            422 invalid_request
    │   ├── BodyTooLarge              413 body_too_large
    │   ├── PromptTooLong             422 prompt_too_long
    │   ├── BodyReadTimeout           408 body_read_timeout
    │   ├── ModelNotFound             404 model_not_found
    │   ├── JobNotFound               404 job_not_found
    │   ├── JobFinished               409 job_finished
    │   ├── IdempotencyConflict       422 idempotency_conflict
    │   ├── RouteNotFound             404 not_found
    │   ├── MethodNotAllowed          405 method_not_allowed
    │   ├── UnsupportedParameter      400 unsupported_parameter: valid in an API we speak, not offered here
    │   └── ManagementRefused         403 management_refused: Ollama's pull/push/create/copy/delete/blobs
    ├── Busy                          503 + Retry-After: come back later
    │   ├── StateBusy                 503 state_busy: another process kept the state database locked
    │   ├── QueueFull                 503 queue_full: MAX_QUEUE tickets already wait on this host
    │   ├── QueueTimeout              503 queue_timeout: the ticket did not reach the slot in QUEUE_TIMEOUT_S
    │   ├── TooManyWaiting            429 too_many_requests: this caller already has max_waiting waiting
    │   ├── TurnPassed                503 turn_passed: (AWS, runner → chat) the ticket is not the head; wait on
    │   (chat: RunnerBusy)
    ├── StateError                    500 state_error: the state database failed (SQLite)
    ├── NotReady                      503 not_ready: a readiness probe failed
    └── UpstreamError                 502 upstream_error: what we call failed
        ├── UpstreamUnavailable       502 upstream_unavailable
        └── UpstreamTimeout           504 upstream_timeout

Endpoints raise; :func:`exception_handlers_for` (installed in each ``create_app``) is the only place
that turns an exception into a response. Mapping is by type, never by message text. The status
and headers (``Retry-After``, ``WWW-Authenticate``) come from the exception; only the body's
shape depends on the API a route speaks (our envelope, Ollama's, OpenAI's): a
:data:`BodyRenderer` chosen by the request's path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypedDict

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from servicekit.observe.record import note_error_code
from servicekit.requestid import request_id_of

logger = logging.getLogger("servicekit.errors")


class ErrorBody(TypedDict):
    code: str
    message: str
    request_id: str
    retry_after_s: NotRequired[int]
    queue_position: NotRequired[int]
    queue_depth: NotRequired[int]


class ErrorEnvelope(TypedDict):
    error: ErrorBody


class ServiceError(Exception):
    """Base of every error a service answers with; subclasses set ``status`` and ``code``."""

    # Class attributes, so each subclass states its mapping; an instance may override them
    # (chat relays the runner's own status and code unchanged).
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}

    def extra(self) -> dict[str, Any]:
        """Fields added to the error body beside code, message and request_id."""
        return {}


class ClientError(ServiceError):
    status = 400
    code = "bad_request"


class Unauthorized(ClientError):
    """No usable credential. The message never says whether a presented key exists."""

    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class ModelForbidden(ClientError):
    status = 403
    code = "model_forbidden"


class Forbidden(ClientError):
    """A valid caller that may not use this route (``/metrics`` without a METRICS_KEYS key)."""

    status = 403
    code = "forbidden"


class InvalidJSON(ClientError):
    status = 400
    code = "invalid_json"


class InvalidRequest(ClientError):
    status = 422
    code = "invalid_request"


class BodyTooLarge(ClientError):
    status = 413
    code = "body_too_large"


class PromptTooLong(ClientError):
    # 422, not 413: the body is within its size limit; what it asks for is too long.
    status = 422
    code = "prompt_too_long"


class BodyReadTimeout(ClientError):
    status = 408
    code = "body_read_timeout"


class ModelNotFound(ClientError):
    status = 404
    code = "model_not_found"


class JobNotFound(ClientError):
    status = 404
    code = "job_not_found"


class JobFinished(ClientError):
    status = 409
    code = "job_finished"


class IdempotencyConflict(ClientError):
    status = 422
    code = "idempotency_conflict"


class RouteNotFound(ClientError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class UnsupportedParameter(ClientError):
    status = 400
    code = "unsupported_parameter"


class ManagementRefused(ClientError):
    status = 403
    code = "management_refused"


class Busy(ServiceError):
    """The one slot is taken for longer than this request may wait: retry after ``retry_after_s``."""

    status = 503
    code = "busy"

    def __init__(
        self, message: str, *, retry_after_s: float, queue_depth: int | None = None, queue_position: int | None = None
    ) -> None:
        super().__init__(message)
        # Retry-After is whole seconds; never tell a client to retry at once.
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.queue_depth = queue_depth
        self.queue_position = queue_position

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}

    def extra(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"retry_after_s": self.retry_after_s}
        if self.queue_position is not None:
            fields["queue_position"] = self.queue_position
        if self.queue_depth is not None:
            fields["queue_depth"] = self.queue_depth
        return fields


class StateBusy(Busy):
    """The state database stayed locked by another process for longer than a request waits."""

    code = "state_busy"


class QueueFull(Busy):
    """MAX_QUEUE tickets already wait on this host (``queue_position``: where this one would have stood)."""

    code = "queue_full"


class QueueTimeout(Busy):
    code = "queue_timeout"


class TurnPassed(Busy):
    """On AWS: chat invoked the runner for a ticket that is no longer the head (a job was promoted
    ahead of it, or its lease lapsed). Chat goes back to waiting; a client never sees it."""

    code = "turn_passed"


class TooManyWaiting(Busy):
    """This caller already has its ``max_waiting`` tickets waiting: a 429, retried after the oldest starts."""

    status = 429
    code = "too_many_requests"


class StateError(ServiceError):
    """The local state database failed (corrupt, unreadable, disk full): not the caller's fault."""

    status = 500
    code = "state_error"


class NotReady(ServiceError):
    status = 503
    code = "not_ready"


class UpstreamError(ServiceError):
    status = 502
    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    status = 502
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def error_envelope(error: ServiceError, request_id: str) -> ErrorEnvelope:
    body: dict[str, Any] = {"code": error.code, "message": error.message, "request_id": request_id}
    body.update(error.extra())
    return {"error": body}  # type: ignore[typeddict-item]


BodyRenderer = Callable[[ServiceError, str], Mapping[str, Any]]
"""An error's body in one API's shape, from the error and the request id."""


def error_response(error: ServiceError, request_id: str, render: BodyRenderer = error_envelope) -> JSONResponse:
    headers = {"X-Request-ID": request_id, **error.headers()}
    return JSONResponse(render(error, request_id), status_code=error.status, headers=headers)


def exception_handlers_for(renderer_for: Callable[[str], BodyRenderer]) -> Mapping[Any, Any]:
    """Starlette exception handlers whose bodies take the shape ``renderer_for(path)`` chooses."""

    def respond(request: Request, error: ServiceError, extra_headers: Mapping[str, str] | None = None) -> Response:
        note_error_code(request.scope, error.code)  # for the request's log line and metrics
        response = error_response(error, request_id_of(request.scope), renderer_for(request.url.path))
        response.headers.update(extra_headers or {})
        return response

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return respond(request, exc)

    async def http_exception(request: Request, exc: Exception) -> Response:
        # Starlette raises these for unknown routes and wrong methods.
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            error: ServiceError = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.")
            return respond(request, error, exc.headers)
        if exc.status_code == 404:
            return respond(request, RouteNotFound(f"There is no route {request.url.path}."))
        return respond(request, ClientError(str(exc.detail)))

    async def unexpected(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log, never to the client.
        logger.error("unhandled error", exc_info=exc)
        return respond(request, ServiceError("An internal error occurred."))

    return {ServiceError: service_error, HTTPException: http_exception, Exception: unexpected}


exception_handlers: Mapping[Any, Any] = exception_handlers_for(lambda path: error_envelope)

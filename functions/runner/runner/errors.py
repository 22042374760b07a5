"""The runner's errors: the shared tree (see :mod:`servicekit.errors`, where the queue's refusals live) plus one.

::

    ServiceError
    ├── ClientError ...            (shared: invalid_json, invalid_request, model_not_found, ...)
    ├── Busy                       503 + Retry-After
    │   ├── QueueFull              503 queue_full     — MAX_QUEUE tickets already wait on this host
    │   ├── QueueTimeout           503 queue_timeout  — no slot within QUEUE_TIMEOUT_S
    │   └── TooManyWaiting         429 too_many_requests — the caller's max_waiting already wait
    └── UpstreamError              502 upstream_error (Ollama's own message)
        ├── UpstreamUnavailable    502 upstream_unavailable — Ollama cannot be reached
        └── UpstreamTimeout        504 upstream_timeout     — Ollama went silent past OLLAMA_TIMEOUT_S
            └── DeadlineExceeded   504 deadline_exceeded    — not done within the caller's X-Time-Left-Ms
"""

from __future__ import annotations

from servicekit.errors import (
    Busy,
    ClientError,
    InvalidRequest,
    ModelNotFound,
    QueueFull,
    QueueTimeout,
    ServiceError,
    TooManyWaiting,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "Busy",
    "ClientError",
    "DeadlineExceeded",
    "InvalidRequest",
    "ModelNotFound",
    "QueueFull",
    "QueueTimeout",
    "ServiceError",
    "TooManyWaiting",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class DeadlineExceeded(UpstreamTimeout):
    """The generation was still running when the caller's time budget ran out; it was stopped."""

    code = "deadline_exceeded"

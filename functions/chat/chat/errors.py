"""Chat's errors: the shared tree (see :mod:`servicekit.errors`) plus the runner's refusals.

::

    ServiceError
    ├── ClientError ...          (shared: invalid_json, invalid_request, prompt_too_long,
    │                             body_too_large, model_not_found — checked before any upstream call)
    ├── Busy
    │   └── RunnerBusy           503 runner_busy + Retry-After: on AWS, the runner function stayed
    │                            throttled (reserved concurrency 1) until chat's deadline
    ├── RunnerRefused            the runner's own error (503 queue_full + Retry-After, 404,
    │                            504 deadline_exceeded on AWS when chat's time ran out, ...),
    │                            relayed with its status, code, message and Retry-After unchanged
    └── UpstreamError            502 upstream_error: the runner answered something that is not our envelope
        ├── UpstreamUnavailable  502 upstream_unavailable: the runner cannot be reached
        └── UpstreamTimeout      504 upstream_timeout: the runner went silent past RUNNER_TIMEOUT_S
"""

from __future__ import annotations

from typing import Any

from servicekit.errors import (
    Busy,
    ClientError,
    ModelNotFound,
    ServiceError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "Busy",
    "ClientError",
    "ModelNotFound",
    "RunnerBusy",
    "RunnerRefused",
    "ServiceError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]

# Headers of a runner error that the client needs too.
RELAYED_HEADERS = ("retry-after",)


class RunnerBusy(Busy):
    code = "runner_busy"


class RunnerRefused(ServiceError):
    """The runner answered with an error envelope; chat passes it on as it is."""

    def __init__(self, status: int, error: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(str(error.get("message", "The runner refused the request.")))
        self.status = status
        self.code = str(error.get("code", "upstream_error"))
        self._extra = {k: v for k, v in error.items() if k not in ("code", "message", "request_id")}
        self._headers = headers

    def headers(self) -> dict[str, str]:
        return self._headers

    def extra(self) -> dict[str, Any]:
        return self._extra

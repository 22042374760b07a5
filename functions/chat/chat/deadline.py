"""Each request's deadline: how long chat may keep trying before it must answer.

On Lambda that is the invocation's remaining time minus a margin (API Gateway gives up at
30 s), never more than ``CHAT_DEADLINE_S``; elsewhere just ``CHAT_DEADLINE_S``. A middleware
sets it from the ASGI scope; the Lambda transport reads it to bound its retries.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

# Time left for chat itself to build and send its answer after giving up on the runner.
LAMBDA_MARGIN_S = 1.0

_deadline: ContextVar[float | None] = ContextVar("chat_deadline", default=None)


def seconds_left(default_s: float) -> float:
    """Seconds until this request's deadline (``default_s`` outside a request)."""
    deadline = _deadline.get()
    return default_s if deadline is None else deadline - time.monotonic()


class DeadlineMiddleware:
    def __init__(self, app: ASGIApp, *, deadline_s: float) -> None:
        self.app = app
        self.deadline_s = deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        budget = self.deadline_s
        context = scope.get("aws.context")
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if remaining_ms is not None:
            budget = min(budget, float(remaining_ms()) / 1000 - LAMBDA_MARGIN_S)
        token = _deadline.set(time.monotonic() + budget)
        try:
            await self.app(scope, receive, send)
        finally:
            _deadline.reset(token)

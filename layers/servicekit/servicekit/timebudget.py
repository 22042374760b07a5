"""Time left: the one home of every deadline a request carries, its margin, and ``X-Time-Left-Ms``.

On AWS chat lives under a hard limit (its Lambda timeout, inside API Gateway's 30 s) while the
runner it invokes may run for 900 s and holds the one slot (reserved concurrency 1) while it
does. Without a budget, a generation longer than chat's limit would go on after chat was
killed, for nobody, and every later request would be throttled until it ended. So:

- chat gives each request a deadline (:class:`DeadlineMiddleware`: ``CHAT_DEADLINE_S``, and
  under Lambda never past the invocation's time less :data:`LAMBDA_MARGIN_S`); its Lambda
  transport retries until :func:`seconds_left` runs out and sends what is left with each
  invoke as ``X-Time-Left-Ms`` (:func:`time_left_header`);
- the runner reads it (:func:`time_left_s`) into a :class:`Deadline` that bounds both the wait
  for the slot (:meth:`Deadline.cap`) and the generation (:meth:`Deadline.run`, which closes
  Ollama's request); a job run inside a Lambda invocation gets the invocation's time left
  (:func:`lambda_time_left_s`) instead, so it fails cleanly before Lambda kills it.

Over HTTP a client that gives up disconnects, which stops the generation the same way, so the
header is not needed there. Every clock here is ``time.monotonic`` (the event loop's clock).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.errors import InvalidRequest

T = TypeVar("T")

TIME_LEFT_HEADER = "x-time-left-ms"
# Under Lambda a function stops this long before its invocation would be killed: chat, to build
# and send its answer after giving up on the runner; the runner, to record how a job ended.
LAMBDA_MARGIN_S = 1.0


def lambda_time_left_s(scope: Scope) -> float | None:
    """Under Lambda, the time this invocation may still use (its remaining time less the margin)."""
    context = scope.get("aws.context")
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return None
    return max(0.0, float(remaining_ms()) / 1000 - LAMBDA_MARGIN_S)


def time_left_header(seconds: float) -> str:
    """The header's value for ``seconds`` left (whole milliseconds, never negative)."""
    return str(max(0, int(seconds * 1000)))


def time_left_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the caller gave this request, or None when it set no budget."""
    raw = headers.get(TIME_LEFT_HEADER)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise InvalidRequest(f"{TIME_LEFT_HEADER} must be a whole number of milliseconds, got {raw!r}.")
    return int(raw) / 1000


class Deadline:
    """``seconds`` from now (None: no deadline); what is left of it, and steps bounded by it."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds

    def left_s(self, default_s: float) -> float:
        """Seconds until the deadline (negative once past it); ``default_s`` when there is none."""
        return default_s if self._at is None else self._at - time.monotonic()

    def cap(self, timeout_s: float) -> float:
        """``timeout_s``, or less when the deadline comes sooner (never negative)."""
        return max(0.0, min(timeout_s, self.left_s(timeout_s)))

    async def run(self, step: Awaitable[T], expired: Callable[[], Exception]) -> T:
        """Await ``step``; past the deadline it is cancelled and ``expired()`` is raised."""
        if self._at is None:
            return await step
        try:
            async with asyncio.timeout(self.left_s(0.0)):
                return await step
        except TimeoutError as exc:
            raise expired() from exc


_request_deadline: ContextVar[Deadline | None] = ContextVar("request_deadline", default=None)


def seconds_left(default_s: float) -> float:
    """Seconds until this request's deadline (``default_s`` outside a request that has one)."""
    deadline = _request_deadline.get()
    return default_s if deadline is None else deadline.left_s(default_s)


class DeadlineMiddleware:
    """Gives each request ``deadline_s``, and under Lambda never past the invocation's time less the margin."""

    def __init__(self, app: ASGIApp, *, deadline_s: float) -> None:
        self.app = app
        self.deadline_s = deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lambda_left = lambda_time_left_s(scope)
        budget = self.deadline_s if lambda_left is None else min(self.deadline_s, lambda_left)
        token = _request_deadline.set(Deadline(budget))
        try:
            await self.app(scope, receive, send)
        finally:
            _request_deadline.reset(token)

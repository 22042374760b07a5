"""A request's time budget: how long the caller will wait for it, from ``X-Time-Left-Ms``.

Chat sends one when it invokes the runner on AWS (see :mod:`servicekit.timebudget`); the slot
wait and the generation both stop when it is spent. Without the header there is no budget and
the usual limits (QUEUE_TIMEOUT_S, OLLAMA_TIMEOUT_S, a client's disconnect) apply alone. A job
run inside a Lambda invocation gets the invocation's remaining time as its budget, so it fails
cleanly before Lambda kills it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from servicekit.timebudget import time_left_s
from starlette.requests import Request

from runner.errors import DeadlineExceeded

T = TypeVar("T")


ASK_LESS = "ask for fewer tokens (options.num_predict) or use POST /v1/jobs"


class Budget:
    def __init__(self, seconds: float | None, *, advice: str = ASK_LESS) -> None:
        self.seconds = seconds
        self._advice = advice
        self._deadline = None if seconds is None else asyncio.get_running_loop().time() + seconds

    @classmethod
    def of(cls, request: Request) -> Budget:
        return cls(time_left_s(request.headers))

    def cap(self, timeout_s: float) -> float:
        """``timeout_s``, or less when the budget ends sooner."""
        if self._deadline is None:
            return timeout_s
        return max(0.0, min(timeout_s, self._deadline - asyncio.get_running_loop().time()))

    async def run(self, step: Awaitable[T]) -> T:
        """Await ``step``; cancelled with :class:`DeadlineExceeded` if the budget ends first."""
        if self._deadline is None:
            return await step
        try:
            async with asyncio.timeout_at(self._deadline):
                return await step
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"The generation did not finish within its time limit ({self.seconds:.0f} s) "
                f"and was stopped; {self._advice}."
            ) from exc

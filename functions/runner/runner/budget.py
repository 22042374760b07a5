"""A runner request's time budget: a :class:`servicekit.timebudget.Deadline` that ends in ``504 deadline_exceeded``.

Where the time comes from, and why, is :mod:`servicekit.timebudget`'s; this only words the
runner's error. Without ``X-Time-Left-Ms`` there is no budget, and the usual limits
(QUEUE_TIMEOUT_S, OLLAMA_TIMEOUT_S, a client's disconnect) apply alone.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from servicekit.timebudget import Deadline, time_left_s
from starlette.requests import Request

from runner.errors import DeadlineExceeded

T = TypeVar("T")

ASK_LESS = "ask for fewer tokens (options.num_predict) or use POST /v1/jobs"


class Budget:
    def __init__(self, seconds: float | None, *, advice: str = ASK_LESS) -> None:
        self.seconds = seconds
        self._deadline = Deadline(seconds)
        self._advice = advice

    @classmethod
    def of(cls, request: Request) -> Budget:
        return cls(time_left_s(request.headers))

    def cap(self, timeout_s: float) -> float:
        """``timeout_s``, or less when the budget ends sooner."""
        return self._deadline.cap(timeout_s)

    async def run(self, step: Awaitable[T]) -> T:
        """Await ``step``; cancelled with :class:`DeadlineExceeded` if the budget ends first."""
        return await self._deadline.run(step, self._exceeded)

    def _exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"The generation did not finish within its time limit ({self.seconds or 0:.0f} s) "
            f"and was stopped; {self._advice}."
        )

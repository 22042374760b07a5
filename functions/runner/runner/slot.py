"""The generation slot: one holder per host, a bounded FIFO queue per process.

Requests in one process queue in arrival order in front of the host lock; only one task per
process (the dispatcher) ever contends for the host lock, and it hands the slot to the oldest
live waiter. Releasing is synchronous, so it runs even from a cancelled task's ``finally``;
when nobody in another process waits, the release hands the slot straight to the next local
waiter without a poll (the in-process handoff is a few microseconds).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from runner.errors import QueueFull, QueueTimeout
from runner.hostlock import HostLock
from runner.settle import Settle, SettlingHostLock

RECENT_GENERATIONS = 20


@dataclass(slots=True)
class Ticket:
    """What a holder learns about its wait, and tells the slot about its generation."""

    queue_ms: float
    # Set by the holder once Ollama sent its final chunk. Left False (cancelled, failed), the
    # slot settles before it passes on: Ollama may still be generating (see runner.settle).
    ended_cleanly: bool = False


class GenerationSlot:
    def __init__(
        self,
        host_lock: HostLock,
        *,
        settle: Settle | None = None,
        max_queue: int,
        poll_interval_s: float,
        generation_estimate_s: float,
    ) -> None:
        self._settle = settle or Settle(max_s=0.0, mark=None)
        self._host = host_lock if settle is None else SettlingHostLock(host_lock, settle)
        self._max_queue = max_queue
        self._poll_interval_s = poll_interval_s
        self._default_estimate_s = generation_estimate_s
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._held_since: float | None = None
        self._recent_s: deque[float] = deque(maxlen=RECENT_GENERATIONS)
        self._dispatcher: asyncio.Task[None] | None = None

    # -- what the app reports -------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    @property
    def busy(self) -> bool:
        return self._held_since is not None or self._host.held_elsewhere()

    def estimate_s(self) -> float:
        """A generation's expected duration, from the recent ones."""
        if not self._recent_s:
            return self._default_estimate_s
        return sum(self._recent_s) / len(self._recent_s)

    def retry_after_s(self, waiting: int) -> float:
        """When a newcomer could expect the slot: the holder's expected rest, then each waiter's turn."""
        estimate = self.estimate_s()
        held_for = time.perf_counter() - self._held_since if self._held_since is not None else 0.0
        return max(0.0, estimate - held_for) + estimate * waiting

    # -- holding ----------------------------------------------------------------------------

    @asynccontextmanager
    async def hold(self, timeout_s: float) -> AsyncIterator[Ticket]:
        """Wait (at most ``timeout_s``) for the slot and hold it for the ``async with`` body."""
        if len(self._waiters) >= self._max_queue:
            raise QueueFull(
                f"The queue is full ({len(self._waiters)} waiting); try again later.",
                retry_after_s=self.retry_after_s(len(self._waiters)),
                queue_depth=len(self._waiters),
            )
        arrived = time.perf_counter()
        if self._held_since is None and not self._live_waiters() and self._try_take_host_lock():
            # Free slot, nobody ahead anywhere: no queue, no dispatcher hop.
            self._held_since = time.perf_counter()
            async with self._settled(Ticket(queue_ms=(self._held_since - arrived) * 1000)) as ticket:
                yield ticket
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake_dispatcher()
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted in the same instant we gave up: pass it on
            else:
                waiter.cancel()
                self._forget(waiter)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(
                    f"No generation slot became free within {timeout_s:g} s.",
                    retry_after_s=self.retry_after_s(len(self._waiters)),
                    queue_depth=len(self._waiters),
                ) from None
            raise
        async with self._settled(Ticket(queue_ms=(time.perf_counter() - arrived) * 1000)) as ticket:
            yield ticket

    @asynccontextmanager
    async def _settled(self, ticket: Ticket) -> AsyncIterator[Ticket]:
        """Hold the granted slot; settle first after a dead holder, and before releasing after a bad end."""
        try:
            await self._settle.before_first_send_after_takeover()
            yield ticket
        finally:
            try:
                if not ticket.ended_cleanly:
                    await self._settle.after_abnormal_end()
            finally:
                self.release()

    def release(self) -> None:
        if self._held_since is None:
            return
        self._recent_s.append(time.perf_counter() - self._held_since)
        self._held_since = None
        self._host.release()
        if not self._live_waiters():
            return
        if self._try_take_host_lock():
            self._grant()  # fast path: nobody elsewhere is waiting
        else:
            self._wake_dispatcher(step_aside=True)

    # -- internals ----------------------------------------------------------------------------

    def _try_take_host_lock(self) -> bool:
        """Take the host lock now, unless another process is already waiting for it (fairness)."""
        return not self._host.others_waiting() and self._host.try_acquire()

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with suppress(ValueError):
            self._waiters.remove(waiter)

    def _live_waiters(self) -> bool:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        return bool(self._waiters)

    def _grant(self) -> None:
        """Give the held host lock to the oldest live waiter, or let it go."""
        if not self._live_waiters():
            self._host.release()
            return
        self._held_since = time.perf_counter()
        self._waiters.popleft().set_result(None)

    def _wake_dispatcher(self, *, step_aside: bool = False) -> None:
        if self._held_since is None and (self._dispatcher is None or self._dispatcher.done()):
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(step_aside))

    async def _dispatch(self, step_aside: bool) -> None:
        """Poll the host lock for this process's queue; the only task that contends for it."""
        if step_aside:
            # Processes already waiting poll every interval: give them two before competing.
            await asyncio.sleep(self._poll_interval_s * 2)
        self._host.set_waiting(True)
        try:
            while self._held_since is None and self._live_waiters():
                if self._host.try_acquire():
                    self._host.set_waiting(False)
                    self._grant()
                    return
                await asyncio.sleep(self._poll_interval_s)
        finally:
            self._host.set_waiting(False)

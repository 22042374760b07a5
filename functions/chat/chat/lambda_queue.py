"""On AWS: a request waits its turn in the queue table, then invokes the runner.

The runner function has reserved concurrency 1, so nothing can wait *inside* it: chat queues
the ticket itself (:class:`~servicekit.queue.dynamo_store.DynamoQueueStore`, the same order
rules as locally), reads the queue every ``POLL_S`` (``NEXT_POLL_S`` once it is next) until its
ticket is the head with nothing running, and only then invokes the runner, which claims that
ticket (``X-Queue-Ticket``). While it waits it renews its ticket's lease (a chat that died
drops out), and, when a job is at the head with no drain running, kicks one (at most every
``KICK_EVERY_S``).

Past chat's deadline (less than ``WAIT_RESERVE_S`` left) it gives up: ``503 queue_timeout`` with
the ticket's real position and a ``Retry-After`` from its ETA, and the ticket is removed.
Jobs are queued here too (``POST /v1/jobs``), and kick the runner only when no drain is running.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from servicekit.callers import Caller
from servicekit.errors import QueueTimeout, ServiceError
from servicekit.queue.drain_lease import DrainLease, job_at_head
from servicekit.queue.model import Standing, job_ticket, job_ticket_id, waiting_ticket
from servicekit.queue.store import QueueStore

logger = logging.getLogger("chat.queue")
# How often a waiting request reads the queue (a strongly consistent read of the state item and
# of the waiting tickets), and how often the next in line does: the handoff gap to a waiting chat
# is about half the latter plus an invoke (bench: p50 137 ms with 100 ms for all, see README).
POLL_S = 0.1
NEXT_POLL_S = 0.025
# A waiting ticket's lease is renewed this often (it lasts QueueLimits.lease_s, 5 s).
RENEW_S = 1.0
# A waiting request behind a job with no drain running kicks one at most this often.
KICK_EVERY_S = 1.0
# Stop waiting with this much of chat's deadline left: the generation needs time too.
WAIT_RESERVE_S = 1.0


@dataclass(slots=True)
class Turn:
    """A request's ticket: where it stood when it joined (``X-Queue-Position``), and where it stands."""

    ticket_id: str
    admitted: Standing
    standing: Standing
    joined: float = field(default_factory=time.perf_counter)

    @property
    def waited_ms(self) -> float:
        return (time.perf_counter() - self.joined) * 1000


class LambdaQueue:
    def __init__(
        self, queue: QueueStore, lease: DrainLease, *, poll_s: float = POLL_S, next_poll_s: float = NEXT_POLL_S
    ) -> None:
        self.queue = queue
        self.lease = lease
        self.poll_s = poll_s
        self.next_poll_s = next_poll_s

    async def join(self, caller: Caller, model: str) -> Turn:
        """Queue an interactive ticket (refusals raise: 429 too_many_requests, 503 queue_full)."""
        ticket_id = uuid.uuid4().hex
        new = waiting_ticket(ticket_id, caller, model, "interactive", holder=f"chat:{ticket_id}")
        standing = await self.queue.enqueue(new, max_waiting=caller.max_waiting, now=time.time())
        return Turn(ticket_id, standing, standing)

    async def wait(self, turn: Turn, seconds_left: Callable[[], float], kick: Callable[[], Awaitable[None]]) -> None:
        """Return when ``turn`` is the head and nothing runs; ``QueueTimeout`` when chat's time is up."""
        first = True
        last_renew = last_kick = time.monotonic()
        while True:
            snapshot = await self.queue.snapshot(now=time.time())
            head = snapshot.head
            if head is not None and head["id"] == turn.ticket_id and snapshot.running is None:
                if first:  # the runner was free when it joined: it ran at once, as locally
                    turn.admitted = Standing(position=0, eta_s=0.0, depth=turn.admitted.depth)
                return
            turn.standing = snapshot.standings.get(turn.ticket_id, turn.standing)
            if first:
                # Where it stood once every ticket that joined with it is written (the enqueue's
                # own answer could not see a request that joined in the same instant).
                turn.admitted = turn.standing
                first = False
            now = time.monotonic()
            if seconds_left() <= WAIT_RESERVE_S:
                raise QueueTimeout(
                    "The runner did not reach this request before its time limit.",
                    retry_after_s=turn.standing.eta_s,
                    queue_position=turn.standing.position,
                    queue_depth=turn.standing.depth,
                )
            if job_at_head(snapshot) and snapshot.running is None and now - last_kick >= KICK_EVERY_S:
                last_kick = now
                if not await self.lease.live(now=time.time()):
                    await kick()
            if now - last_renew >= RENEW_S:
                last_renew = now
                await self.queue.renew([turn.ticket_id], now=time.time())
            poll_s = self.next_poll_s if turn.standing.position == 1 else self.poll_s
            await anyio.sleep(min(poll_s, max(0.0, seconds_left() - WAIT_RESERVE_S)))

    async def leave(self, turn: Turn) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.queue.leave(turn.ticket_id)
            except ServiceError as exc:
                logger.warning("could not remove ticket %s (its lease will): %s", turn.ticket_id, exc.message)

    async def enqueue_job(self, job_id: str, caller: Caller, model: str) -> Standing:
        """Queue a job's ticket (no holder: whichever invocation drains runs it)."""
        return await self.queue.enqueue(
            job_ticket(job_id, caller, model), max_waiting=caller.max_waiting, now=time.time()
        )

    async def leave_job(self, job_id: str) -> None:
        await self.queue.leave(job_ticket_id(job_id))

    async def draining(self) -> bool:
        """Whether a runner invocation is draining jobs (read after the job's ticket was written)."""
        return await self.lease.live(now=time.time())

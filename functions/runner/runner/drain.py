"""On AWS: a runner invocation that holds the concurrency runs the queue's jobs back to back.

Lambda's own retries of a throttled event start at 1 s and back off to 5 minutes, so a design
that waits on them leaves the GPU idle while work waits. Instead, one invocation *drains*:

- It runs the head of the queue while the head is a job (a ticket with no holder), claiming
  the next one in the same write that finishes the last (``QueueStore.finish``).
- It returns as soon as the head is an interactive ticket: the chat waiting on it polls the
  queue and invokes the runner itself (for its reply), within about 100 ms.
- It stops cleanly before the 900 s limit, when the time left is less than ``HANDOVER_RESERVE_S``
  or twice the longest job it ran, and hands over with one asynchronous self-invoke.
- A drain lease (:mod:`servicekit.queue.drain_lease`) tells chat that a drain is under way, so
  ``POST /v1/jobs`` kicks the runner only when none is. A kick that finds no job at the head
  (late, or twice) costs one read of the queue and returns.
- A job ticket found running when a drain starts was left by an invocation that died (reserved
  concurrency 1: no other can be running): its job is failed (``runner_lost``) and the next runs.

A synchronous invocation (a chat's ticket) never runs a job: after it, if a job is at the head
and no drain holds the lease, it kicks one (:meth:`Drain.hand_over_if_jobs_wait`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Literal

import anyio
from servicekit.errors import ServiceError
from servicekit.lambda_event import LambdaInvoker, http_api_event
from servicekit.queue.drain_lease import DRAIN_PATH, DRAIN_RENEW_S, DrainLease, job_at_head
from servicekit.queue.model import Ticket

from runner.budget import Budget
from runner.jobs import JobRunner
from runner.slot import GenerationSlot, Grant

logger = logging.getLogger("runner.drain")
# A drain stops claiming jobs when less than this (or twice its longest job) is left.
HANDOVER_RESERVE_S = 60.0
JOB_TOO_LONG = "the runner function's timeout (900 s on AWS) bounds a job; ask for fewer tokens (options.num_predict)"
RUNNER_LOST = {"code": "runner_lost", "message": "The runner invocation running this job stopped."}
DrainOutcome = Literal["idle", "drained", "handed_over"]


class Drain:
    def __init__(
        self,
        slot: GenerationSlot,
        jobs: JobRunner,
        lease: DrainLease,
        *,
        function_name: str,
        invoker: Callable[[], LambdaInvoker],
    ) -> None:
        self.slot = slot
        self.jobs = jobs
        self.lease = lease
        self.function_name = function_name
        self._invoker = invoker

    async def run(self, time_left: Callable[[], float]) -> DrainOutcome:
        """Drain the queue's jobs while time allows (``time_left``: this invocation's seconds left)."""
        queue, holder = self.slot.queue, self.slot.holder
        snapshot = await queue.snapshot(now=time.time())
        if not job_at_head(snapshot):
            return "idle"
        await self._fail_orphan(snapshot.running)
        await self.lease.take(holder, now=time.time())
        current: list[Ticket] = []
        keepalive = asyncio.get_running_loop().create_task(self._renew(current))
        longest_s = 0.0
        holding_lease = True
        try:
            ticket = await queue.claim(holder, [], now=time.time())
            while True:
                if ticket is None:
                    # The handshake with chat: let go of the lease, *then* look again.
                    await self.lease.release(holder)
                    holding_lease = False
                    if not job_at_head(await queue.snapshot(now=time.time())):
                        return "drained"
                    await self.lease.take(holder, now=time.time())
                    holding_lease = True
                    ticket = await queue.claim(holder, [], now=time.time())
                    continue
                current[:] = [ticket]
                duration_s = await self._run(ticket, time_left)
                longest_s = max(longest_s, duration_s)
                enough = time_left() > max(HANDOVER_RESERVE_S, 2 * longest_s)
                ticket = await queue.finish(
                    ticket["id"], holder=holder, mine=[], now=time.time(), duration_s=duration_s, take_jobs=enough
                )
                current.clear()
                if not enough:
                    if job_at_head(await queue.snapshot(now=time.time())):
                        await self._invoke_self()
                        return "handed_over"
                    return "drained"
        finally:
            keepalive.cancel()
            if holding_lease:
                with anyio.CancelScope(shield=True):
                    await self.lease.release(holder)

    async def _run(self, ticket: Ticket, time_left: Callable[[], float]) -> float:
        grant = Grant(ticket, queue_ms=max(0.0, time.time() - ticket["created_at"]) * 1000)
        await self.jobs.run_ticket(grant, Budget(time_left(), advice=JOB_TOO_LONG))
        await self.slot.settle_after(grant)
        return time.perf_counter() - grant.started

    async def _renew(self, current: list[Ticket]) -> None:
        """Keep the lease (and the running ticket's) alive while draining."""
        while True:
            await asyncio.sleep(DRAIN_RENEW_S)
            try:
                await self.lease.renew(self.slot.holder, now=time.time())
                await self.slot.queue.renew([t["id"] for t in current], now=time.time())
            except ServiceError as exc:
                logger.warning("drain lease: %s", exc.message)

    async def _fail_orphan(self, running: Ticket | None) -> None:
        """A job still running when a drain starts belongs to an invocation that died."""
        if running is None or running["job_id"] is None:
            return
        logger.warning("job %s was left running by a runner invocation that stopped", running["job_id"])
        await self.jobs.store.settle(running["job_id"], now=time.time(), status="failed", error=dict(RUNNER_LOST))

    async def hand_over_if_jobs_wait(self) -> None:
        """After a chat's generation: kick a drain if a job is at the head and none is draining."""
        snapshot = await self.slot.queue.snapshot(now=time.time())
        if job_at_head(snapshot) and not await self.lease.live(now=time.time()):
            await self._invoke_self()

    async def _invoke_self(self) -> None:
        """One asynchronous invoke of this function (Lambda queues it until this invocation returns)."""
        from botocore.exceptions import BotoCoreError, ClientError

        payload = json.dumps(http_api_event("POST", DRAIN_PATH, headers={})).encode()
        try:
            await anyio.to_thread.run_sync(
                lambda: self._invoker().invoke(FunctionName=self.function_name, InvocationType="Event", Payload=payload)
            )
        except (BotoCoreError, ClientError) as exc:  # the next kick (a job, a waiting chat) covers it
            logger.warning("could not hand the queue over to a new runner invocation: %s", exc)

"""The generation slot: the host's fair queue says who is next, the host lock makes it one at a time.

Every generation is a ticket in the queue store (:mod:`servicekit.queue`), shared by every
runner process. A process runs a ticket only while it holds the host lock *and* the store
agrees the ticket is the head (``claim``, conditional); a lock without the head is let go at
once, so the queue decides the order and the lock makes overlap impossible even if the queue
were wrong.

One dispatcher task per process polls for its turn: a non-blocking lock probe every
``poll_interval_s`` (about 2 µs), and a store read only when the lock is free. Releasing
finishes the ticket and claims the next one in the same write, so when the next ticket is this
process's own (or a job, which any process may run), the slot passes on without letting go of
the lock. Jobs are tickets without a holder: the process that claims one runs it (``on_job``).
The same loop refreshes this process's waiting positions, renews their leases (a process that
dies stops renewing; its tickets drop out), and, when idle, looks for jobs left by a dead runner.
An optional :class:`~servicekit.observe.queue.SlotObserver` hears of each grant (its wait, by
class), each release, and each read of the queue (metrics).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from servicekit.callers import Caller
from servicekit.errors import QueueTimeout, ServiceError, TurnPassed
from servicekit.observe.queue import SlotObserver
from servicekit.queue.model import (
    Snapshot,
    Standing,
    Ticket,
    TicketClass,
    job_ticket,
    running,
    waiting_ticket,
)
from servicekit.queue.store import QueueStore

from runner.hostlock import HostLock
from runner.settle import Settle, SettlingHostLock

logger = logging.getLogger("runner.slot")

# A waiting stream hears its standing at least this often, changed or not.
HEARTBEAT_S = 5.0
# Waiting positions are re-read this often (and whenever the lock is seen free).
POSITION_REFRESH_S = 0.25
# Waiting tickets' leases are renewed this often; a lease lasts QueueLimits.lease_s.
LEASE_RENEW_S = 1.0
# With nothing waiting here, look for jobs (left by a runner that died) this often.
IDLE_DRAIN_S = 0.5


@dataclass(eq=False, slots=True)
class Grant:
    """The slot, held: for ``ticket``, since ``started`` (perf_counter), after ``queue_ms`` of waiting."""

    ticket: Ticket
    queue_ms: float
    started: float = field(default_factory=time.perf_counter)
    # Set by the holder once Ollama sent its final chunk. Left False (cancelled, failed), the
    # slot settles before it passes on: Ollama may still be generating (see runner.settle).
    ended_cleanly: bool = False
    # A ticket chat queued (AWS): released without claiming a job, then ``after_adopted`` runs.
    adopted: bool = False


@dataclass(eq=False, slots=True)
class Place:
    """One ticket of this process's, waiting or granted."""

    ticket_id: str
    admitted: Standing  # where it stood when it joined (X-Queue-Position)
    standing: Standing
    arrived: float = field(default_factory=time.perf_counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    grant: Grant | None = None


JobStarter = Callable[[Grant], None]


class GenerationSlot:
    def __init__(
        self,
        host_lock: HostLock,
        queue: QueueStore,
        *,
        poll_interval_s: float,
        settle: Settle | None = None,
        observer: SlotObserver | None = None,
    ) -> None:
        self._settle = settle or Settle(max_s=0.0, mark=None)
        self._host = host_lock if settle is None else SettlingHostLock(host_lock, settle)
        self.queue = queue
        self._poll_interval_s = poll_interval_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._places: dict[str, Place] = {}
        self._holding: Grant | None = None
        # Runs a job this process claimed (set once, before any request: JobRunner.run_claimed).
        self.on_job: JobStarter | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._draining = False  # jobs may be waiting: look for them
        self._keepalive: asyncio.Task[None] | None = None
        # After an adopted ticket is released (AWS): hand queued jobs to a drain (runner.drain).
        self.after_adopted: Callable[[], Awaitable[None]] | None = None
        self._persistent = False  # started with the app: dispatch (and drain) for as long as it runs
        self._observer = observer

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Dispatch for as long as the app runs (its lifespan): drain jobs, even ones left by a runner
        that died, before any request arrives."""
        self._persistent = self._draining = True
        self._dispatch_now()

    def _dispatch_now(self) -> None:
        """Make sure the dispatcher runs. Started here (on Lambda, where no lifespan runs), it stops
        once nothing of this process's waits, so no worker thread outlives the invocation."""
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def aclose(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)

    @property
    def waiting_here(self) -> int:
        """How many of this process's requests wait (the host's queue: ``queue.snapshot``)."""
        return len(self._waiting_ids())

    @property
    def busy(self) -> bool:
        return self._holding is not None or self._host.held_elsewhere()

    async def read_queue(self) -> Snapshot:
        """The host's queue now (a store read), as the observer hears of it."""
        now = time.time()
        snapshot = await self.queue.snapshot(now=now)
        if self._observer is not None:
            self._observer.queue_read(snapshot, now=now)
        return snapshot

    # -- joining ------------------------------------------------------------------------------------

    @asynccontextmanager
    async def place(
        self, caller: Caller, ticket_class: TicketClass, model: str, *, ticket_id: str | None = None
    ) -> AsyncIterator[Place]:
        """Join the queue (refusals raise here), and leave it (or release the slot) on exit.

        With ``ticket_id`` (on AWS: the ticket chat queued and waited on until it was the head),
        take that ticket instead: ``TurnPassed`` if it is not the head any more.
        """
        place = await (self._adopt(ticket_id) if ticket_id is not None else self._join(caller, ticket_class, model))
        try:
            yield place
        finally:
            with anyio.CancelScope(shield=True):
                await self._leave(place)

    async def _join(self, caller: Caller, ticket_class: TicketClass, model: str) -> Place:
        ticket_id = uuid.uuid4().hex
        new = waiting_ticket(ticket_id, caller, model, ticket_class, holder=self.holder)
        # Free slot here and on the host: take the lock first, so joining can claim at once (one write).
        claim_as = self.holder if self._holding is None and self._host.try_acquire() else None
        try:
            now = time.time()
            standing = await self.queue.enqueue(new, max_waiting=caller.max_waiting, now=now, claim_as=claim_as)
        except BaseException:
            if claim_as is not None:
                self._host.release()
            raise
        place = Place(ticket_id, standing, standing)
        self._places[ticket_id] = place
        if standing.position == 0 and claim_as is not None:
            self._give(place, Grant(running(new, claim_as, now), queue_ms=0.0))
        else:
            if claim_as is not None:
                self._host.release()
            self._dispatch_now()
            self._wake.set()
        return place

    async def _adopt(self, ticket_id: str) -> Place:
        """Claim a ticket another service queued (it waited for the head; this process holds the slot).

        Only jobs are left for a drain: the invocation answering a chat must return, so it never
        claims a job (``take_jobs=False``). While it runs, the ticket's lease is renewed: on AWS
        a running ticket whose invocation died is noticed by its lapsed lease.
        """
        if self._holding is not None or not self._host.try_acquire():
            raise TurnPassed("The runner is busy with another generation.", retry_after_s=1)
        try:
            claimed = await self.queue.claim(self.holder, [ticket_id], now=time.time(), take_jobs=False)
        except BaseException:
            self._host.release()
            raise
        if claimed is None:
            self._host.release()
            raise TurnPassed("This ticket is not at the head of the queue (any more).", retry_after_s=1)
        place = Place(ticket_id, Standing(0, 0.0, 0), Standing(0, 0.0, 0))
        self._places[ticket_id] = place
        grant = Grant(claimed, queue_ms=0.0, adopted=True)
        self._give(place, grant)
        self._keepalive = asyncio.get_running_loop().create_task(self._renew_while_held(grant))
        return place

    async def _renew_while_held(self, grant: Grant) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            if self._holding is not grant:
                return
            try:
                await self.queue.renew([grant.ticket["id"]], now=time.time())
            except ServiceError as exc:
                logger.warning("could not renew ticket %s: %s", grant.ticket["id"], exc.message)

    async def enqueue_job(self, job_id: str, caller: Caller, model: str) -> Standing:
        """Add a job's ticket (no holder: whichever runner holds the slot when it is the head runs it)."""
        new = job_ticket(job_id, caller, model)
        standing = await self.queue.enqueue(new, max_waiting=caller.max_waiting, now=time.time())
        self._draining = True
        self._dispatch_now()
        self._wake.set()
        return standing

    async def standings(self, place: Place, timeout_s: float) -> AsyncIterator[Standing]:
        """The place's standing each time its position changes (and every ``HEARTBEAT_S``) until it is granted.

        Raises ``QueueTimeout`` when it is not granted within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while place.grant is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QueueTimeout(
                    f"No generation slot became free within {timeout_s:g} s.",
                    retry_after_s=place.standing.eta_s,
                    queue_position=place.standing.position,
                    queue_depth=place.standing.depth,
                )
            try:
                async with asyncio.timeout(min(left, HEARTBEAT_S)):
                    await place.changed.wait()
            except TimeoutError:
                pass
            place.changed.clear()
            if place.grant is None:
                yield place.standing

    async def wait(self, place: Place, timeout_s: float) -> Grant:
        """Wait (at most ``timeout_s``) for the place's turn; the grant, ready to send to Ollama."""
        async for _ in self.standings(place, timeout_s):
            pass
        assert place.grant is not None
        return await self.ready(place.grant)

    async def ready(self, grant: Grant) -> Grant:
        """Before the first send after the lock was taken over from a holder that died: settle."""
        await self._settle.before_first_send_after_takeover()
        return grant

    # -- releasing ----------------------------------------------------------------------------------

    async def _leave(self, place: Place) -> None:
        self._places.pop(place.ticket_id, None)
        if place.grant is not None:
            await self.release(place.grant)
            return
        try:
            await self.queue.leave(place.ticket_id)
        except ServiceError:
            logger.warning("could not remove ticket %s; its lease will drop it", place.ticket_id)

    async def release(self, grant: Grant) -> None:
        """Finish ``grant``'s ticket and pass the slot on: to a ticket here (or a job) without letting go."""
        if self._holding is not grant:
            return
        duration_s = time.perf_counter() - grant.started
        following: Ticket | None = None
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        try:
            with anyio.CancelScope(shield=True):
                await self.settle_after(grant)
                following = await self.queue.finish(
                    grant.ticket["id"],
                    holder=self.holder,
                    mine=self._waiting_ids(),
                    now=time.time(),
                    duration_s=duration_s,
                    take_jobs=not grant.adopted,
                )
        except ServiceError:
            logger.warning("could not finish ticket %s; the next holder drops it", grant.ticket["id"])
        finally:
            self._holding = None
            if self._observer is not None:
                self._observer.slot_released()
            if following is None:
                self._host.release()
                self._wake.set()
        if following is not None:
            self._grant(following)
        elif grant.adopted and self.after_adopted is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await self.after_adopted()
                except ServiceError as exc:
                    logger.warning("after the generation: %s", exc.message)

    async def settle_after(self, grant: Grant) -> None:
        """After a cancelled or failed generation: wait until Ollama has surely stopped (runner.settle)."""
        if not grant.ended_cleanly:
            await self._settle.after_abnormal_end()

    # -- dispatching --------------------------------------------------------------------------------

    def _waiting_ids(self) -> list[str]:
        return [ticket_id for ticket_id, place in self._places.items() if place.grant is None]

    def _grant(self, ticket: Ticket) -> None:
        """The store gave us ``ticket`` and we hold the lock: hand it to its place, or run the job."""
        place = self._places.get(ticket["id"])
        if place is not None and place.grant is None:
            self._give(place, Grant(ticket, queue_ms=(time.perf_counter() - place.arrived) * 1000))
            return
        queue_ms = max(0.0, time.time() - ticket["created_at"]) * 1000
        grant = Grant(ticket, queue_ms=queue_ms)
        self._hold(grant)
        if ticket["job_id"] is not None and self.on_job is not None:
            self.on_job(grant)
        else:  # its place left in the same instant: pass the slot on
            asyncio.get_running_loop().create_task(self.release(grant))

    def _hold(self, grant: Grant) -> None:
        self._holding = grant
        if self._observer is not None:
            self._observer.slot_granted(grant.ticket["ticket_class"], grant.queue_ms)

    def _give(self, place: Place, grant: Grant) -> None:
        self._hold(grant)
        place.grant = grant
        place.standing = Standing(position=0, eta_s=0.0, depth=place.standing.depth)
        place.changed.set()

    def _update(self, snapshot: Snapshot) -> None:
        for ticket_id, place in self._places.items():
            standing = snapshot.standings.get(ticket_id)
            if place.grant is None and standing is not None:
                # A stream hears of a new position at once; a new ETA alone waits for the heartbeat.
                moved = standing.position != place.standing.position
                place.standing = standing
                if moved:
                    place.changed.set()

    async def _dispatch(self) -> None:
        last_refresh = last_renew = 0.0
        while self._persistent or self._draining or self._waiting_ids():
            try:
                last_refresh, last_renew = await self._step(last_refresh, last_renew)
            except ServiceError as exc:  # the store is busy or failing: try again shortly
                logger.warning("queue dispatch: %s", exc.message)
                await asyncio.sleep(IDLE_DRAIN_S)

    async def _step(self, last_refresh: float, last_renew: float) -> tuple[float, float]:
        now = time.monotonic()
        idle = not self._places and not self._draining
        due = now - last_refresh >= (IDLE_DRAIN_S if idle else POSITION_REFRESH_S)
        if self._holding is None and (not idle or due) and not self._host.held_elsewhere():
            snapshot = await self.read_queue()
            self._update(snapshot)
            last_refresh = now
            head = snapshot.head
            self._draining = any(t["holder"] is None for t in snapshot.waiting)
            ours = head is not None and (head["id"] in self._places or (head["holder"] is None and bool(self.on_job)))
            if ours and self._holding is None and self._host.try_acquire():
                claimed = None
                try:
                    claimed = await self.queue.claim(self.holder, self._waiting_ids(), now=time.time())
                finally:
                    if claimed is None:
                        self._host.release()
                if claimed is not None:
                    self._grant(claimed)
                    return last_refresh, last_renew
        elif not idle and due:
            self._update(await self.read_queue())
            last_refresh = now
        if self._places and now - last_renew >= LEASE_RENEW_S:
            await self.queue.renew(self._waiting_ids(), now=time.time())
            last_renew = now
        await self._sleep(IDLE_DRAIN_S if idle else self._poll_interval_s)
        return last_refresh, last_renew

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

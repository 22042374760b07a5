"""What a queue store does: the same semantics over SQLite (here) and DynamoDB (issue 11).

Every transition is conditional, so several processes (or Lambda invocations) can share one
queue: ``enqueue`` checks the caps and fixes the ticket's virtual start in the same write;
``claim`` and ``finish`` move a ticket ``waiting → running`` only if it is still the head.
Only a process that holds the slot (the host lock, or reserved concurrency 1) calls ``claim``
or ``finish``; the queue decides who is next, the slot makes overlap impossible.

The DynamoDB version (:mod:`.dynamo_store`) keeps tickets as items and the class clocks,
callers' virtual finishes and the ticket index in one state item; it orders with
:func:`servicekit.queue.model.snapshot` after two strongly consistent reads.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from servicekit.queue.model import NewTicket, Snapshot, Standing, Ticket


class QueueStore(Protocol):
    async def enqueue(
        self, ticket: NewTicket, *, max_waiting: int | None, now: float, claim_as: str | None = None
    ) -> Standing:
        """Add a waiting ticket and return where it stands.

        With ``claim_as`` (that process holds the slot), a ticket that is the head at once is
        claimed in the same write: its standing is position 0 (an idle slot costs one write).

        Raises ``TooManyWaiting`` when the caller already has ``max_waiting`` (None: the
        limits' default) tickets waiting, ``QueueFull`` when ``max_queue`` wait in all; both
        carry where the ticket would have stood. A job's ticket is added once: enqueueing it
        again returns its standing.
        """
        ...

    async def snapshot(self, *, now: float) -> Snapshot:
        """The queue in order, with every waiting ticket's standing (a read)."""
        ...

    async def claim(self, holder: str, mine: Collection[str], *, now: float, take_jobs: bool = True) -> Ticket | None:
        """With the slot held: the head becomes ``running`` by ``holder`` if it is one of ``mine``
        or (with ``take_jobs``) a job (no holder); None (nothing changed) otherwise."""
        ...

    async def finish(
        self,
        ticket_id: str,
        *,
        holder: str,
        mine: Collection[str],
        now: float,
        duration_s: float | None,
        take_jobs: bool = True,
    ) -> Ticket | None:
        """With the slot held: remove the running ticket (recording ``duration_s`` for its model's
        estimate), then ``claim`` the next one in the same write (the fast handoff). A Lambda
        invocation answering a chat passes ``take_jobs=False``: it must return, not run a job."""
        ...

    async def leave(self, ticket_id: str) -> None:
        """Remove a ticket that will not run (its client left, or it timed out)."""
        ...

    async def renew(self, ticket_ids: Collection[str], *, now: float) -> None:
        """Extend the leases of held tickets: their process is alive. (On DynamoDB a running
        ticket has a lease too: a Lambda invocation that died leaves no lock to notice.)"""
        ...

    async def job_standing(self, job_id: str, *, now: float) -> Standing | None:
        """Where a job's ticket stands (None when it has none waiting)."""
        ...

"""The queue's caps, checked the same way by every store before a ticket is added.

A caller may have ``max_waiting`` tickets waiting (its key's, else MAX_WAITING_PER_CALLER), the
queue ``max_queue`` in all. With nothing running, the head is being handed the slot right now:
it does not count as waiting. A refusal says where the ticket would have stood.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from servicekit.errors import QueueFull, TooManyWaiting
from servicekit.queue.model import QueueLimits, Snapshot, Ticket, would_stand


def check_caps(
    before: Snapshot,
    recent: Mapping[str, Sequence[float]],
    candidate: Ticket,
    *,
    limit: int,
    limits: QueueLimits,
    now: float,
) -> None:
    """Raise ``TooManyWaiting`` (429) or ``QueueFull`` (503) if ``candidate`` may not join ``before``."""
    waiting = before.waiting if before.running is not None else before.waiting[1:]
    mine = sum(1 for t in waiting if t["caller"] == candidate["caller"])
    if mine < limit and len(waiting) < limits.max_queue:
        return
    standing = would_stand(before.running, before.waiting, recent, candidate, now=now, limits=limits)
    if mine >= limit:
        raise TooManyWaiting(
            f"You already have {limit} request{'s' if limit != 1 else ''} waiting (your limit); "
            "try again when one has started.",
            retry_after_s=standing.eta_s,
            queue_position=standing.position,
            queue_depth=standing.depth,
        )
    raise QueueFull(
        f"The queue is full ({standing.depth} waiting); try again later.",
        retry_after_s=standing.eta_s,
        queue_position=standing.position,
        queue_depth=standing.depth,
    )

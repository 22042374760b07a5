"""The queue's measures, the same for Prometheus (chat's ``/metrics``) and EMF (Lambda).

Two kinds, measured in two places:

- **What the queue holds** — depth by class, the oldest waiting ticket's age — is read from the
  store's snapshot (:func:`queue_measures`), never counted by the processes that enqueue. The
  queue is host-wide: every runner worker (and on AWS every invocation) adds to the one store,
  a job's ticket belongs to no process, and a process that dies leaves its own count behind.
  A gauge each worker set from what it saw would be summed twice (``livesum``) or be one
  worker's stale view (``mostrecent``); reading the store when asked is exact. Prometheus reads
  it at scrape time; on Lambda the runner reports what it read (its dispatcher reads the queue
  while anything waits), at most every :data:`QUEUE_REPORT_S`.
- **What the slot did** — the wait of each ticket that got it, by class; whether it is held —
  is reported by the process that holds it (a :class:`SlotObserver`), from ``Grant.queue_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from servicekit.queue.model import Snapshot, TicketClass

# On Lambda, the queue's depth and oldest age are written at most this often per process.
QUEUE_REPORT_S = 10.0


@dataclass(frozen=True, slots=True)
class QueueMeasures:
    depth: dict[TicketClass, int]  # waiting tickets by class (the running one is not waiting)
    oldest_wait_s: float  # how long the oldest waiting ticket has waited; 0 when none waits


def queue_measures(snapshot: Snapshot, *, now: float) -> QueueMeasures:
    oldest = min((ticket["created_at"] for ticket in snapshot.waiting), default=now)
    return QueueMeasures(
        depth=snapshot.depth_by_class(),
        oldest_wait_s=round(max(0.0, now - oldest), 3),
    )


class SlotObserver(Protocol):
    """What the runner's slot reports as it works (Prometheus families, or EMF on Lambda)."""

    def slot_granted(self, ticket_class: TicketClass, queue_ms: float) -> None:
        """This process now holds the slot for a ticket that waited ``queue_ms``."""
        ...

    def slot_released(self) -> None: ...

    def queue_read(self, snapshot: Snapshot, *, now: float) -> None:
        """The slot read the queue (its dispatcher, or ``/readyz``)."""
        ...

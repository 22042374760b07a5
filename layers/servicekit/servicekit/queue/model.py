"""A queue ticket and the rules that order tickets; pure functions, so every store agrees.

Order (the README's "How the queue works" has a worked example):

1. A ``batch`` ticket (a job) waiting longer than ``batch_max_wait_s`` is *promoted*: promoted
   tickets come first, oldest first, so jobs are never starved.
2. Then ``interactive`` tickets (a client waits on them), then ``batch`` tickets.
3. Within a class, weighted fair queuing by caller: at enqueue a ticket gets a virtual start
   ``max(V, caller's last virtual finish)`` and the caller's virtual finish moves to
   ``start + 1 / weight``; ``V`` (per class) is the virtual start of the ticket that started
   last. Tickets run in virtual-start order, ties in arrival order. So a caller with one ticket
   waiting is behind at most one turn of each other caller, a weight-N caller gets N turns per
   round, and each caller's own tickets run first in, first out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    from servicekit.callers import Caller

TicketClass = Literal["interactive", "batch"]
TicketStatus = Literal["waiting", "running"]
TICKET_CLASSES: tuple[TicketClass, ...] = ("interactive", "batch")
# A model with no generation measured yet is expected to take this long (GENERATION_ESTIMATE_S).
DEFAULT_ESTIMATE_S = 5.0
# The deployment's limits, the same for every service that admits tickets (the runner; chat on AWS).
DEFAULT_MAX_QUEUE = 64  # tickets waiting, host-wide
DEFAULT_MAX_WAITING_PER_CALLER = 8  # a key's max_waiting overrides it
DEFAULT_BATCH_MAX_WAIT_S = 120.0  # a job waiting longer goes ahead of interactive requests
# A waiting request's process renews its ticket every second; a process that died stops, and its
# tickets drop out of the queue after this.
DEFAULT_QUEUE_LEASE_S = 5.0
# How many recent generations of a model its expected duration is the mean of.
RECENT_GENERATIONS = 20


class Ticket(TypedDict):
    id: str
    caller: str
    weight: int  # turns per round
    ticket_class: TicketClass
    model: str
    created_at: float  # epoch seconds (every process on the host shares the clock)
    seq: int  # arrival order, unique: breaks ties
    vstart: float  # virtual start in its class, fixed at enqueue
    status: TicketStatus
    holder: str | None  # the process whose client waits for it (None: a job, any runner may run it)
    lease_until: float | None  # a held waiting ticket whose process stops renewing it is dropped
    started_at: float | None
    job_id: str | None


class NewTicket(TypedDict):
    id: str
    caller: str
    weight: int
    ticket_class: TicketClass
    model: str
    holder: str | None
    job_id: str | None


@dataclass(frozen=True, slots=True)
class QueueLimits:
    max_queue: int  # MAX_QUEUE: tickets waiting, host-wide
    max_waiting_per_caller: int  # MAX_WAITING_PER_CALLER: a caller's key may set its own
    batch_max_wait_s: float  # BATCH_MAX_WAIT_S: a job waiting longer is promoted
    lease_s: float  # a held waiting ticket not renewed within this is dropped (its process died)
    default_estimate_s: float = DEFAULT_ESTIMATE_S


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a ticket is: 0 = running, 1 = next; its expected wait; how many wait in all."""

    position: int
    eta_s: float
    depth: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole queue as one reader saw it."""

    running: Ticket | None
    waiting: tuple[Ticket, ...]  # in order: waiting[0] is next
    standings: Mapping[str, Standing]  # every waiting ticket's, by id

    @property
    def head(self) -> Ticket | None:
        return self.waiting[0] if self.waiting else None

    def depth_by_class(self) -> dict[TicketClass, int]:
        depth: dict[TicketClass, int] = {c: 0 for c in TICKET_CLASSES}
        for ticket in self.waiting:
            depth[ticket["ticket_class"]] += 1
        return depth


def job_ticket_id(job_id: str) -> str:
    """A job's ticket id: one ticket per job, whoever queues it (a second delivery finds it)."""
    return f"job-{job_id}"


def waiting_ticket(ticket_id: str, caller: Caller, model: str, ticket_class: TicketClass, holder: str) -> NewTicket:
    """A request's ticket: ``holder`` (a process, or a waiting chat on AWS) renews its lease."""
    return {
        "id": ticket_id,
        "caller": caller.name,
        "weight": caller.weight,
        "model": model,
        "ticket_class": ticket_class,
        "holder": holder,
        "job_id": None,
    }


def job_ticket(job_id: str, caller: Caller, model: str) -> NewTicket:
    """A job's ticket: batch, no holder (whoever holds the slot when it is the head runs it)."""
    return {
        "id": job_ticket_id(job_id),
        "caller": caller.name,
        "weight": caller.weight,
        "model": model,
        "ticket_class": "batch",
        "holder": None,
        "job_id": job_id,
    }


def running(new: NewTicket, holder: str, now: float) -> Ticket:
    """The ticket ``new`` as it is once claimed at the moment it joined (an idle slot)."""
    return {
        **new,
        "created_at": now,
        "seq": 0,
        "vstart": 0.0,
        "status": "running",
        "holder": holder,
        "lease_until": None,
        "started_at": now,
    }


def order_key(ticket: Ticket, now: float, batch_max_wait_s: float) -> tuple[int, float, int]:
    if ticket["ticket_class"] == "batch" and now - ticket["created_at"] >= batch_max_wait_s:
        return 0, ticket["created_at"], ticket["seq"]  # promoted: oldest first
    return (1 if ticket["ticket_class"] == "interactive" else 2), ticket["vstart"], ticket["seq"]


def live(ticket: Ticket, now: float) -> bool:
    """A waiting ticket counts unless its process stopped renewing its lease."""
    return ticket["lease_until"] is None or ticket["lease_until"] >= now


def in_order(waiting: Sequence[Ticket], now: float, batch_max_wait_s: float) -> list[Ticket]:
    return sorted((t for t in waiting if live(t, now)), key=lambda t: order_key(t, now, batch_max_wait_s))


def head_of(waiting: Sequence[Ticket], now: float, batch_max_wait_s: float) -> Ticket | None:
    """The next ticket alone (what a claim needs): ``in_order(...)[0]`` without sorting the rest."""
    return min((t for t in waiting if live(t, now)), key=lambda t: order_key(t, now, batch_max_wait_s), default=None)


def virtual_start(clock: float, caller_finish: float | None) -> float:
    return clock if caller_finish is None else max(clock, caller_finish)


def estimate_s(recent: Mapping[str, Sequence[float]], model: str, default_s: float) -> float:
    durations = recent.get(model)
    return sum(durations) / len(durations) if durations else default_s


def snapshot(
    running: Ticket | None,
    waiting: Sequence[Ticket],
    recent: Mapping[str, Sequence[float]],
    *,
    now: float,
    limits: QueueLimits,
) -> Snapshot:
    """Order the waiting tickets and give each its position and ETA (the sum of expected durations ahead)."""
    ordered = in_order(waiting, now, limits.batch_max_wait_s)
    ahead_s = 0.0
    if running is not None:
        elapsed = now - (running["started_at"] or now)
        ahead_s = max(0.0, estimate_s(recent, running["model"], limits.default_estimate_s) - elapsed)
    standings: dict[str, Standing] = {}
    for index, ticket in enumerate(ordered):
        standings[ticket["id"]] = Standing(position=index + 1, eta_s=round(ahead_s, 3), depth=len(ordered))
        ahead_s += estimate_s(recent, ticket["model"], limits.default_estimate_s)
    return Snapshot(running=running, waiting=tuple(ordered), standings=standings)


def would_stand(
    running: Ticket | None,
    waiting: Sequence[Ticket],
    recent: Mapping[str, Sequence[float]],
    candidate: Ticket,
    *,
    now: float,
    limits: QueueLimits,
) -> Standing:
    """Where ``candidate`` would stand if it joined (what a refusal reports); depth counts the others."""
    standing = snapshot(running, [*waiting, candidate], recent, now=now, limits=limits).standings[candidate["id"]]
    return Standing(position=standing.position, eta_s=standing.eta_s, depth=standing.depth - 1)

"""Queue tickets in the DynamoDB table (AWS): the same order rules as SQLite, every transition conditional.

Items (the table's key is ``id``; see :mod:`servicekit.state.dynamo`):

- ``queue#t#<ticket id>``: one per ticket, the fields of :class:`~servicekit.queue.model.Ticket`.
- ``queue#state``: ``ids`` (the set of ticket ids: the index), ``v#<class>`` (each class's virtual
  clock), ``f#<class>#<caller>`` (each caller's virtual finish) and ``r#<model>`` (recent durations).

A read is two strongly consistent calls (``GetItem`` of the state, ``BatchGetItem`` of its
tickets): positions are exact, and a ticket written before a read is always seen by it (chat's
"is a drain running?" handshake relies on that; a GSI ``Query`` would be eventually consistent).
A ticket is written before it is indexed, so an indexed id without an item is one being removed.

- ``enqueue``: ``PutItem`` of the ticket (``attribute_not_exists``: a job is queued once), then
  ``UpdateItem`` of the state adding its id and moving the caller's virtual finish, on condition
  that the finish is still the one read (two requests of one caller at once: one retries).
- ``claim``/``finish``: one ``TransactWriteItems``: the head ``waiting → running`` (condition:
  still waiting), the finished and orphaned tickets deleted, the class clock moved (condition:
  not moved past it meanwhile), the index and the model's recent durations updated.
- A running ticket has a lease too (``lease_s``, renewed by its invocation): a Lambda invocation
  that died leaves no lock behind to notice, so a chat waiting behind it reads the lease.

A write that loses a race (a condition, or another transaction on the state item) is retried
from a fresh read, ``WRITE_ATTEMPTS`` times, then answered ``503 state_busy``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

import anyio

from servicekit.errors import StateBusy
from servicekit.queue.caps import check_caps
from servicekit.queue.model import (
    RECENT_GENERATIONS,
    NewTicket,
    QueueLimits,
    Snapshot,
    Standing,
    Ticket,
    live,
    snapshot,
    virtual_start,
)
from servicekit.state.dynamo import ConditionFailed, Conflict, DynamoTable, from_item, to_item
from servicekit.state.dynamo_update import Update

STATE_ID = "queue#state"
TICKET_PREFIX = "queue#t#"
# Tickets are removed when they end; TTL only sweeps what a crash left behind.
TICKET_TTL_S = 24 * 3600
WRITE_ATTEMPTS = 8
# Callers' finishes left behind by the clock, removed per claim (bounds the update expression).
PRUNE_PER_WRITE = 20
_RETRY_JITTER_S = 0.02
_TICKET_FIELDS = tuple(Ticket.__annotations__)


def _key(item_id: str) -> dict[str, Any]:
    return {"id": item_id}


def _ticket(item: dict[str, Any]) -> Ticket:
    data = {**from_item(item), "id": item["tid"]}
    return cast(Ticket, {name: data.get(name) for name in _TICKET_FIELDS})


@dataclass(frozen=True, slots=True)
class _Read:
    state: dict[str, Any]
    tickets: list[Ticket]
    missing: frozenset[str]  # indexed, but the item is gone (being removed)

    def recent(self) -> dict[str, list[float]]:
        return {name[2:]: list(value) for name, value in self.state.items() if name.startswith("r#")}

    def clock(self, klass: str) -> float:
        return float(self.state.get(f"v#{klass}", 0.0))


class DynamoQueueStore:
    def __init__(self, table: Any = None, *, limits: QueueLimits, connect: Callable[[], Any] | None = None) -> None:
        """``table`` is a boto3 DynamoDB Table resource, or ``connect`` makes one on first use."""
        self._db = DynamoTable(table, connect=connect)
        self.limits = limits

    @property
    def _client(self) -> Any:
        # The Table resource's own client: it takes and returns plain values (Decimal numbers), as
        # the resource does, and has what the resource lacks (BatchGetItem, TransactWriteItems).
        return self._db.table.meta.client

    # -- reading ----------------------------------------------------------------------------------

    async def _read(self) -> _Read:
        name = self._db.table.name
        found = await self._db.call(
            lambda: self._client.get_item(TableName=name, Key=_key(STATE_ID), ConsistentRead=True)
        )
        state = from_item(found.get("Item", {}))
        ids = sorted(state.get("ids", set()))
        tickets: list[Ticket] = []
        for start in range(0, len(ids), 100):
            keys = [_key(TICKET_PREFIX + ticket_id) for ticket_id in ids[start : start + 100]]
            while keys:
                request = {name: {"Keys": keys, "ConsistentRead": True}}
                answer = await self._db.call(lambda r=request: self._client.batch_get_item(RequestItems=r))  # type: ignore[misc]
                tickets.extend(_ticket(item) for item in answer.get("Responses", {}).get(name, []))
                keys = answer.get("UnprocessedKeys", {}).get(name, {}).get("Keys", [])
        present = {t["id"] for t in tickets}
        return _Read(state, tickets, frozenset(i for i in ids if i not in present))

    def _snapshot(self, read: _Read, now: float, *, without: str | None = None) -> Snapshot:
        tickets = [t for t in read.tickets if t["id"] != without]
        running = [t for t in tickets if t["status"] == "running" and live(t, now)]
        latest = max(running, key=lambda t: t["started_at"] or 0.0) if running else None
        waiting = [t for t in tickets if t["status"] == "waiting"]
        return snapshot(latest, waiting, read.recent(), now=now, limits=self.limits)

    async def snapshot(self, *, now: float) -> Snapshot:
        return self._snapshot(await self._read(), now)

    async def job_standing(self, job_id: str, *, now: float) -> Standing | None:
        read = await self._read()
        ids = [t["id"] for t in read.tickets if t["job_id"] == job_id and t["status"] == "waiting"]
        return self._snapshot(read, now).standings.get(ids[0]) if ids else None

    # -- writing ----------------------------------------------------------------------------------

    async def _retry(self, attempt: Callable[[], Any]) -> Any:
        """Run ``attempt`` (a fresh read and a conditional write) until no race is lost."""
        for tries in range(WRITE_ATTEMPTS):
            try:
                return await attempt()
            except (ConditionFailed, Conflict):
                await anyio.sleep(random.uniform(0, _RETRY_JITTER_S * (tries + 1)))
        raise StateBusy("The queue is busy with other writers; try again.", retry_after_s=1)

    async def enqueue(
        self, ticket: NewTicket, *, max_waiting: int | None, now: float, claim_as: str | None = None
    ) -> Standing:
        limit = max_waiting or self.limits.max_waiting_per_caller

        async def attempt() -> Standing:
            read = await self._read()
            before = self._snapshot(read, now)
            if ticket["job_id"] is not None:
                for existing in read.tickets:
                    if existing["job_id"] == ticket["job_id"]:  # a second delivery of the same job
                        return before.standings.get(existing["id"], Standing(0, 0.0, 0))
            klass, caller = ticket["ticket_class"], ticket["caller"]
            finish_name = f"f#{klass}#{caller}"
            old_finish = read.state.get(finish_name)
            candidate: Ticket = {
                **ticket,
                "created_at": now,
                "seq": time.time_ns(),  # arrival order across invocations (ties: the id)
                "vstart": virtual_start(read.clock(klass), old_finish),
                "status": "waiting",
                "lease_until": None if ticket["holder"] is None else now + self.limits.lease_s,
                "started_at": None,
            }
            check_caps(before, read.recent(), candidate, limit=limit, limits=self.limits, now=now)
            after = snapshot(before.running, [*before.waiting, candidate], read.recent(), now=now, limits=self.limits)
            claimed = claim_as is not None and before.running is None and after.waiting[0]["id"] == ticket["id"]
            if claimed:
                assert claim_as is not None
                lease = now + self.limits.lease_s
                candidate = {
                    **candidate,
                    "status": "running",
                    "holder": claim_as,
                    "started_at": now,
                    "lease_until": lease,
                }
            item_id = TICKET_PREFIX + ticket["id"]
            item = {
                **candidate,
                "id": item_id,
                "tid": ticket["id"],
                "expires_at": int(now + TICKET_TTL_S),
            }
            name = self._db.table.name
            await self._db.call(
                lambda: self._client.put_item(
                    TableName=name, Item=to_item(item), ConditionExpression="attribute_not_exists(id)"
                )
            )
            update = Update(STATE_ID)
            update.clauses["ADD"].append(f"{update.name('ids')} {update.value({ticket['id']})}")
            finish = update.name(finish_name)
            update.clauses["SET"].append(
                f"{finish} = {update.value(candidate['vstart'] + 1.0 / max(1, ticket['weight']))}"
            )
            if old_finish is None:
                update.conditions.append(f"attribute_not_exists({finish})")
            else:
                update.conditions.append(f"{finish} = {update.value(old_finish)}")
            if claimed:
                self._move_clock(update, read, candidate, keep=finish_name)
            try:
                await self._db.call(lambda: self._client.update_item(TableName=name, **update.request()))
            except (ConditionFailed, Conflict):
                await self._db.call(lambda: self._client.delete_item(TableName=name, Key=_key(item_id)))
                raise
            if claimed:
                return Standing(position=0, eta_s=0.0, depth=len(after.waiting) - 1)
            return after.standings[ticket["id"]]

        return cast(Standing, await self._retry(attempt))

    @staticmethod
    def _move_clock(update: Update, read: _Read, started: Ticket, keep: str = "") -> None:
        """The class clock moves to the started ticket's virtual start (never back). A caller's finish
        at or behind it no longer matters (a new ticket starts at the clock): it goes, so the state
        item holds only callers served in the current round."""
        klass = started["ticket_class"]
        if started["vstart"] <= read.clock(klass):
            return
        clock = update.name(f"v#{klass}")
        vstart = update.value(started["vstart"])
        update.clauses["SET"].append(f"{clock} = {vstart}")
        update.conditions.append(f"(attribute_not_exists({clock}) OR {clock} <= {vstart})")
        behind = [
            n for n, v in read.state.items() if n.startswith(f"f#{klass}#") and v <= started["vstart"] and n != keep
        ]
        update.clauses["REMOVE"].extend(update.name(n) for n in behind[:PRUNE_PER_WRITE])

    def _claim_writes(
        self,
        read: _Read,
        snap: Snapshot,
        update: Update,
        holder: str,
        mine: Collection[str],
        now: float,
        take_jobs: bool,
    ) -> tuple[Ticket | None, list[dict[str, Any]]]:
        """The writes that start the head for ``holder`` (none when it is not for it), and the ticket."""
        head = snap.head
        if head is None or not (head["id"] in mine or (take_jobs and head["holder"] is None)):
            return None, []
        started = cast(
            Ticket,
            {
                **head,
                "status": "running",
                "holder": holder,
                "started_at": now,
                "lease_until": now + self.limits.lease_s,
            },
        )
        name = self._db.table.name
        writes: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": name,
                    "Key": _key(TICKET_PREFIX + head["id"]),
                    "UpdateExpression": (
                        "SET #status = :running, holder = :holder, started_at = :now, lease_until = :lease"
                    ),
                    "ConditionExpression": "#status = :waiting",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": to_item(
                        {
                            ":running": "running",
                            ":waiting": "waiting",
                            ":holder": holder,
                            ":now": now,
                            ":lease": started["lease_until"],
                        }
                    ),
                }
            }
        ]
        self._move_clock(update, read, started)
        return started, writes

    def _sweep(self, read: _Read, update: Update, now: float, also: Collection[str] = ()) -> list[dict[str, Any]]:
        """Deletes of what no longer belongs in the queue: running tickets (whoever holds the slot is the
        only runner), waiting tickets whose lease lapsed, ``also``; and their ids out of the index."""
        gone = {t["id"] for t in read.tickets if t["status"] == "running" or not live(t, now)} | set(also)
        name = self._db.table.name
        writes = [{"Delete": {"TableName": name, "Key": _key(TICKET_PREFIX + i)}} for i in sorted(gone)[:90]]
        if gone | read.missing:
            update.clauses["DELETE"].append(f"{update.name('ids')} {update.value(gone | read.missing)}")
        return writes

    async def _transact(self, writes: list[dict[str, Any]], update: Update) -> None:
        if update.clauses["SET"] or update.clauses["DELETE"] or update.clauses["REMOVE"]:
            writes = [*writes, {"Update": {"TableName": self._db.table.name, **update.request()}}]
        if writes:
            await self._db.call(lambda: self._client.transact_write_items(TransactItems=writes))

    async def claim(self, holder: str, mine: Collection[str], *, now: float, take_jobs: bool = True) -> Ticket | None:
        async def attempt() -> Ticket | None:
            read = await self._read()
            update = Update(STATE_ID)
            started, writes = self._claim_writes(read, self._snapshot(read, now), update, holder, mine, now, take_jobs)
            if started is None:
                return None
            await self._transact([*writes, *self._sweep(read, update, now)], update)
            return started

        return cast(Ticket | None, await self._retry(attempt))

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
        async def attempt() -> Ticket | None:
            read = await self._read()
            update = Update(STATE_ID)
            ended = [t for t in read.tickets if t["id"] == ticket_id]
            if ended and duration_s is not None:
                model = ended[0]["model"]
                recent = [*read.recent().get(model, []), round(duration_s, 4)][-RECENT_GENERATIONS:]
                update.clauses["SET"].append(f"{update.name('r#' + model)} = {update.value(recent)}")
            # The next head, as if the finished ticket were gone already (it is, in the same write).
            after = _Read(
                read.state, [t for t in read.tickets if t["id"] != ticket_id and t["status"] == "waiting"], read.missing
            )
            started, writes = self._claim_writes(
                after, self._snapshot(after, now), update, holder, mine, now, take_jobs
            )
            if started is None and ended:
                self._forget_round(update, read, after, ended[0]["ticket_class"], now)
            sweep = self._sweep(read, update, now, also=[ticket_id] if ended else [])
            await self._transact([*writes, *sweep], update)
            return started

        return cast(Ticket | None, await self._retry(attempt))

    @staticmethod
    def _forget_round(update: Update, read: _Read, after: _Read, klass: str, now: float) -> None:
        """Nothing of ``klass`` waits any more: its round is over, and callers' finishes go (a caller
        returning later starts at the clock, like a newcomer). Condition: no ticket joined meanwhile.
        (Without this, one finish per caller ever served would pile up in the state item.)"""
        if any(t["ticket_class"] == klass and live(t, now) for t in after.tickets):
            return
        finishes = [n for n in read.state if n.startswith(f"f#{klass}#")][:PRUNE_PER_WRITE]
        if not finishes:
            return
        update.clauses["REMOVE"].extend(update.name(n) for n in finishes)
        ids = update.name("ids")
        update.conditions.append(f"size({ids}) = {update.value(len(read.state.get('ids', ())))}")

    async def leave(self, ticket_id: str) -> None:
        name = self._db.table.name
        writes = [
            {"Delete": {"TableName": name, "Key": _key(TICKET_PREFIX + ticket_id)}},
            {
                "Update": {
                    "TableName": name,
                    "Key": _key(STATE_ID),
                    "UpdateExpression": "DELETE ids :id",
                    "ExpressionAttributeValues": {":id": {ticket_id}},
                }
            },
        ]
        await self._retry(lambda: self._db.call(lambda: self._client.transact_write_items(TransactItems=writes)))

    async def renew(self, ticket_ids: Collection[str], *, now: float) -> None:
        name = self._db.table.name
        for ticket_id in ticket_ids:
            with suppress(ConditionFailed):  # it has left (or was swept): nothing to keep alive
                await self._db.call(
                    lambda i=ticket_id: self._client.update_item(  # type: ignore[misc]
                        TableName=name,
                        Key=_key(TICKET_PREFIX + i),
                        UpdateExpression="SET lease_until = :lease",
                        ConditionExpression="attribute_exists(id)",
                        ExpressionAttributeValues=to_item({":lease": now + self.limits.lease_s}),
                    )
                )

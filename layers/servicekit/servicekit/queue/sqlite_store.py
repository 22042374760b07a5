"""Queue tickets in the state database (local mode and compose), shared by every runner process.

Each operation is one transaction off the event loop (:class:`StateDatabase`). A queue holds
at most MAX_QUEUE waiting tickets, so a snapshot reads them all and orders them in Python with
the same rules the DynamoDB store uses (:mod:`servicekit.queue.model`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import cast

from servicekit.errors import Busy
from servicekit.queue.caps import check_caps
from servicekit.queue.model import (
    RECENT_GENERATIONS,
    NewTicket,
    QueueLimits,
    Snapshot,
    Standing,
    Ticket,
    head_of,
    snapshot,
    virtual_start,
)
from servicekit.state.sqlite import StateDatabase

_COLUMNS = (
    "id, caller, weight, ticket_class, model, created_at, seq, vstart, status, holder, lease_until, started_at, job_id"
)
# For this long after a refusal, a newcomer is checked against the caps by a read before writing.
PRECHECK_AFTER_REFUSAL_S = 1.0
_NAMES = tuple(name.strip() for name in _COLUMNS.split(","))


def _tickets(db: sqlite3.Connection, where: str = "") -> list[Ticket]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM queue_tickets {where}")
    return [cast(Ticket, dict(zip(_NAMES, row, strict=True))) for row in rows]


def _recent(db: sqlite3.Connection) -> dict[str, list[float]]:
    return {model: json.loads(recent) for model, recent in db.execute("SELECT model, recent FROM queue_models")}


class SqliteQueueStore:
    def __init__(self, database: StateDatabase, limits: QueueLimits) -> None:
        self.database = database
        self.limits = limits
        self._refused_at = float("-inf")

    # -- reading ----------------------------------------------------------------------------------

    def _snapshot(self, db: sqlite3.Connection, now: float) -> Snapshot:
        tickets = _tickets(db)
        running = [t for t in tickets if t["status"] == "running"]
        latest = max(running, key=lambda t: t["started_at"] or 0.0) if running else None
        waiting = [t for t in tickets if t["status"] == "waiting"]
        return snapshot(latest, waiting, _recent(db), now=now, limits=self.limits)

    async def snapshot(self, *, now: float) -> Snapshot:
        return await self.database.read(lambda db: self._snapshot(db, now))

    async def job_standing(self, job_id: str, *, now: float) -> Standing | None:
        def standing(db: sqlite3.Connection) -> Standing | None:
            row = db.execute(
                "SELECT id FROM queue_tickets WHERE job_id = ? AND status = 'waiting'", (job_id,)
            ).fetchone()
            return None if row is None else self._snapshot(db, now).standings.get(row[0])

        return await self.database.read(standing)

    # -- writing ----------------------------------------------------------------------------------

    def _drop_dead(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM queue_tickets WHERE status = 'waiting' AND lease_until < ?", (now,))

    def _admit(self, db: sqlite3.Connection, ticket: NewTicket, limit: int, now: float) -> Ticket | Standing:
        """The ticket to insert (caps checked: refusals raise), or the standing of this job's existing ticket."""
        if ticket["job_id"] is not None:
            row = db.execute("SELECT id FROM queue_tickets WHERE job_id = ?", (ticket["job_id"],)).fetchone()
            if row is not None:  # a second delivery of the same job
                return self._snapshot(db, now).standings.get(row[0], Standing(0, 0.0, 0))
        klass = ticket["ticket_class"]
        clock_row = db.execute("SELECT vtime FROM queue_clocks WHERE ticket_class = ?", (klass,)).fetchone()
        finish_row = db.execute(
            "SELECT vfinish FROM queue_callers WHERE ticket_class = ? AND caller = ?", (klass, ticket["caller"])
        ).fetchone()
        before = self._snapshot(db, now)
        candidate: Ticket = {
            **ticket,
            "created_at": now,
            "seq": 1 << 62,  # after everyone already here
            "vstart": virtual_start(clock_row[0] if clock_row else 0.0, finish_row[0] if finish_row else None),
            "status": "waiting",
            "lease_until": None if ticket["holder"] is None else now + self.limits.lease_s,
            "started_at": None,
        }
        check_caps(before, _recent(db), candidate, limit=limit, limits=self.limits, now=now)
        return candidate

    async def enqueue(
        self, ticket: NewTicket, *, max_waiting: int | None, now: float, claim_as: str | None = None
    ) -> Standing:
        limit = max_waiting or self.limits.max_waiting_per_caller
        if now - self._refused_at < PRECHECK_AFTER_REFUSAL_S:
            # Under overload, refuse from a read: readers run side by side, writers one at a time
            # (measured: refusals by write transaction alone halved the runner's 503 rate).
            try:
                await self.database.read(lambda db: self._admit(db, ticket, limit, now))
            except Busy:
                self._refused_at = now
                raise

        def enqueue(db: sqlite3.Connection) -> Standing:
            self._drop_dead(db, now)
            candidate = self._admit(db, ticket, limit, now)
            if isinstance(candidate, Standing):
                return candidate
            db.execute(
                f"INSERT INTO queue_tickets ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))})",
                tuple(None if name == "seq" else candidate[name] for name in _NAMES),  # type: ignore[literal-required]
            )
            db.execute(
                "INSERT OR REPLACE INTO queue_callers (ticket_class, caller, vfinish) VALUES (?, ?, ?)",
                (candidate["ticket_class"], ticket["caller"], candidate["vstart"] + 1.0 / max(1, ticket["weight"])),
            )
            after = self._snapshot(db, now)
            if claim_as is not None and after.head is not None and after.head["id"] == ticket["id"]:
                self._start(db, after.head, claim_as, now)
                return Standing(position=0, eta_s=0.0, depth=len(after.waiting) - 1)
            return after.standings[ticket["id"]]

        try:
            return await self.database.write(enqueue)
        except Busy:
            self._refused_at = now
            raise

    def _claim(
        self, db: sqlite3.Connection, holder: str, mine: Collection[str], now: float, take_jobs: bool = True
    ) -> Ticket | None:
        self._drop_dead(db, now)
        # The head alone: no standings, no estimates (measured: half of a handoff's write).
        head = head_of(_tickets(db, "WHERE status = 'waiting'"), now, self.limits.batch_max_wait_s)
        if head is None or not (head["id"] in mine or (take_jobs and head["holder"] is None)):
            return None
        return self._start(db, head, holder, now)

    @staticmethod
    def _start(db: sqlite3.Connection, head: Ticket, holder: str, now: float) -> Ticket:
        # Whoever holds the slot is the only runner: any other running ticket's holder is gone.
        db.execute("DELETE FROM queue_tickets WHERE status = 'running'")
        db.execute(
            "UPDATE queue_tickets SET status = 'running', holder = ?, started_at = ?, lease_until = NULL WHERE id = ?",
            (holder, now, head["id"]),
        )
        db.execute(
            "INSERT INTO queue_clocks (ticket_class, vtime) VALUES (?, ?)"
            " ON CONFLICT (ticket_class) DO UPDATE SET vtime = max(vtime, excluded.vtime)",
            (head["ticket_class"], head["vstart"]),
        )
        return cast(Ticket, {**head, "status": "running", "holder": holder, "started_at": now, "lease_until": None})

    async def claim(self, holder: str, mine: Collection[str], *, now: float, take_jobs: bool = True) -> Ticket | None:
        return await self.database.write(lambda db: self._claim(db, holder, mine, now, take_jobs), urgent=True)

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
        def finish(db: sqlite3.Connection) -> Ticket | None:
            row = db.execute("SELECT model, ticket_class FROM queue_tickets WHERE id = ?", (ticket_id,)).fetchone()
            db.execute("DELETE FROM queue_tickets WHERE id = ?", (ticket_id,))
            if row is not None and duration_s is not None:
                self._record(db, row[0], duration_s)
            following = self._claim(db, holder, mine, now, take_jobs)
            if following is None and row is not None:
                # Nothing of its class waits: the round is over, a returning caller starts afresh.
                db.execute(
                    "DELETE FROM queue_callers WHERE ticket_class = ?1 AND NOT EXISTS"
                    " (SELECT 1 FROM queue_tickets WHERE ticket_class = ?1)",
                    (row[1],),
                )
            return following

        return await self.database.write(finish, urgent=True)

    @staticmethod
    def _record(db: sqlite3.Connection, model: str, duration_s: float) -> None:
        found = db.execute("SELECT recent FROM queue_models WHERE model = ?", (model,)).fetchone()
        recent = [*(json.loads(found[0]) if found else []), round(duration_s, 4)][-RECENT_GENERATIONS:]
        db.execute("INSERT OR REPLACE INTO queue_models (model, recent) VALUES (?, ?)", (model, json.dumps(recent)))

    async def leave(self, ticket_id: str) -> None:
        await self.database.write(lambda db: db.execute("DELETE FROM queue_tickets WHERE id = ?", (ticket_id,)))

    async def renew(self, ticket_ids: Collection[str], *, now: float) -> None:
        if not ticket_ids:
            return
        ids = list(ticket_ids)

        def renew(db: sqlite3.Connection) -> None:
            marks = ", ".join("?" * len(ids))
            db.execute(
                f"UPDATE queue_tickets SET lease_until = ? WHERE status = 'waiting' AND id IN ({marks})",
                (now + self.limits.lease_s, *ids),
            )

        await self.database.write(renew)

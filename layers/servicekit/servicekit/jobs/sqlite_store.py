"""Jobs in the state database (local mode and compose), shared by chat and every runner process.

A job is a row: the whole document as JSON, plus the columns queries need (owner, status,
created_at, expires_at). Every transition is a read-modify-write inside one ``BEGIN
IMMEDIATE`` transaction, so concurrent processes never lose one. Rows past their TTL are
ignored by reads and deleted at most once a minute, by the next create.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any, Literal, cast

from servicekit.errors import IdempotencyConflict
from servicekit.jobs.model import CANCELLABLE, Job, overdue
from servicekit.jobs.store import Outcome
from servicekit.state.sqlite import StateDatabase

SWEEP_EVERY_S = 60.0
# Rows deleted per sweep, so a sweep holds the write lock briefly (measured: 50k expired rows
# in one DELETE held it 0.3-0.6 s); a full batch makes the next create sweep again.
SWEEP_BATCH = 2000


def _idempotency_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _select(db: sqlite3.Connection, job_id: str) -> Job | None:
    row = db.execute("SELECT document FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else cast(Job, json.loads(row[0]))


def _insert(db: sqlite3.Connection, job: Job) -> None:
    db.execute(
        "INSERT INTO jobs (id, owner, status, created_at, expires_at, document) VALUES (?, ?, ?, ?, ?, ?)",
        (job["id"], job["owner"], job["status"], job["created_at"], job["expires_at"], json.dumps(job)),
    )


def _save(db: sqlite3.Connection, job: Job) -> None:
    db.execute("UPDATE jobs SET status = ?, document = ? WHERE id = ?", (job["status"], json.dumps(job), job["id"]))


def _settle_change(status: str, now: float, error: dict[str, Any]) -> Callable[[Job], bool]:
    def change(job: Job) -> bool:
        if job["status"] not in CANCELLABLE:
            return False
        job.update({"finished_at": now, "lease_until": None, "queue_position": None, "error": error})
        job["status"] = cast(Literal["failed", "expired"], status)
        return True

    return change


def _current(db: sqlite3.Connection, job_id: str, now: float) -> Job | None:
    """The job as a reader should see it: None past its TTL, settled if time ran out (write transaction)."""
    job = _select(db, job_id)
    if job is None or now > job["expires_at"]:
        return None
    if (due := overdue(job, now)) is not None:
        _settle_change(due[0], now, due[1])(job)
        _save(db, job)
    return job


class SqliteJobStore:
    def __init__(self, database: StateDatabase) -> None:
        self.database = database
        self._last_sweep = 0.0

    async def _update(self, job_id: str, change: Callable[[Job], bool]) -> tuple[Job | None, bool]:
        """Apply ``change`` to the stored job in one write transaction; it returns whether it changed it."""

        def update(db: sqlite3.Connection) -> tuple[Job | None, bool]:
            job = _select(db, job_id)
            if job is None:
                return None, False
            changed = change(job)
            if changed:
                _save(db, job)
            return job, changed

        return await self.database.write(update)

    async def create(self, job: Job, idempotency_key: str | None = None) -> tuple[Job, bool]:
        now = job["created_at"]
        sweep = now - self._last_sweep >= SWEEP_EVERY_S
        if sweep:
            self._last_sweep = now

        def create(db: sqlite3.Connection) -> tuple[Job, bool]:
            if sweep:
                self._sweep(db, now)
            if idempotency_key is None:
                _insert(db, job)
                return job, True
            owner, key_hash = job["owner"], _idempotency_hash(idempotency_key)
            record = db.execute(
                "SELECT job_id, request_hash FROM idempotency WHERE owner = ? AND key_hash = ? AND expires_at > ?",
                (owner, key_hash, now),
            ).fetchone()
            if record is not None:
                if record[1] != job["request_hash"]:
                    raise IdempotencyConflict("This Idempotency-Key was used with a different request.")
                if (existing := _current(db, record[0], now)) is not None:
                    return existing, False
            stored = cast(Job, {**job, "idempotency_key": idempotency_key})
            _insert(db, stored)
            db.execute(
                "INSERT OR REPLACE INTO idempotency (owner, key_hash, job_id, request_hash, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (owner, key_hash, job["id"], job["request_hash"], job["expires_at"]),
            )
            return stored, True

        return await self.database.write(create)

    def _sweep(self, db: sqlite3.Connection, now: float) -> None:
        """Delete at most SWEEP_BATCH expired jobs and idempotency records (reads ignore them anyway)."""
        full = False
        for table in ("jobs", "idempotency"):
            deleted = db.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE expires_at < ? LIMIT ?)",
                (now, SWEEP_BATCH),
            ).rowcount
            full = full or deleted == SWEEP_BATCH
        if full:
            self._last_sweep = 0.0  # more to delete: the next create sweeps again

    async def get(self, job_id: str, *, now: float) -> Job | None:
        job = await self.database.read(lambda db: _select(db, job_id))
        if job is None or now > job["expires_at"]:
            return None
        if overdue(job, now) is None:
            return job
        return await self.database.write(lambda db: _current(db, job_id, now))

    async def list_jobs(self, owner: str, *, limit: int, after: str | None = None, now: float) -> list[Job]:
        def page(db: sqlite3.Connection) -> list[Job]:
            if after is None:
                rows = db.execute(
                    "SELECT document FROM jobs WHERE owner = ? AND expires_at >= ?"
                    " ORDER BY created_at DESC, id DESC LIMIT ?",
                    (owner, now, limit),
                )
            else:
                # A cursor that is not one of owner's jobs makes the sub-select NULL: no rows.
                rows = db.execute(
                    "SELECT document FROM jobs WHERE owner = ? AND expires_at >= ?"
                    " AND (created_at, id) < (SELECT created_at, id FROM jobs WHERE id = ? AND owner = ?)"
                    " ORDER BY created_at DESC, id DESC LIMIT ?",
                    (owner, now, after, owner, limit),
                )
            return [cast(Job, json.loads(row[0])) for row in rows]

        jobs = await self.database.read(page)
        if not any(overdue(job, now) for job in jobs):
            return jobs
        return [settled for job in jobs if (settled := await self.get(job["id"], now=now)) is not None]

    async def set_queue_position(self, job_id: str, position: int) -> None:
        def change(job: Job) -> bool:
            if job["status"] != "queued":
                return False
            job["queue_position"] = position
            return True

        await self._update(job_id, change)

    async def start(self, job_id: str, *, now: float, lease_s: float) -> Job | None:
        def change(job: Job) -> bool:
            if job["status"] != "queued" or now > job["start_deadline"]:
                return False
            job.update({"status": "running", "started_at": now, "lease_until": now + lease_s, "queue_position": None})
            return True

        job, changed = await self._update(job_id, change)
        return job if changed else None

    async def heartbeat(self, job_id: str, *, response: str, now: float, lease_s: float) -> bool:
        def change(job: Job) -> bool:
            if job["status"] != "running":
                return False
            job.update({"response": response, "lease_until": now + lease_s})
            return True

        return (await self._update(job_id, change))[1]

    async def finish(self, job_id: str, outcome: Outcome, *, now: float, fields: dict[str, Any]) -> bool:
        def change(job: Job) -> bool:
            if job["status"] != "running":
                return False
            job.update(fields)  # type: ignore[typeddict-item]
            job.update({"status": outcome, "finished_at": now, "lease_until": None})
            return True

        return (await self._update(job_id, change))[1]

    async def cancel(self, job_id: str, *, now: float) -> Job | None:
        def change(job: Job) -> bool:
            if job["status"] not in CANCELLABLE:
                return False
            job.update({"status": "cancelled", "finished_at": now, "lease_until": None, "queue_position": None})
            return True

        return (await self._update(job_id, change))[0]

    async def settle(
        self, job_id: str, *, now: float, status: Literal["failed", "expired"], error: dict[str, Any]
    ) -> bool:
        return (await self._update(job_id, _settle_change(status, now, error)))[1]

    async def delete(self, job_id: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            job = _select(db, job_id)
            if job is None:
                return
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            if "idempotency_key" in job:
                db.execute(
                    "DELETE FROM idempotency WHERE owner = ? AND key_hash = ? AND job_id = ?",
                    (job["owner"], _idempotency_hash(job["idempotency_key"]), job_id),
                )

        await self.database.write(delete)

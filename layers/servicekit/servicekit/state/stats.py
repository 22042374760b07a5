"""What operators read from the state database: counts for /metrics, the board for ``chat.top``.

Read-only, one short read transaction each. The queue itself is read through its store
(``QueueStore.snapshot``), in the order the runner serves it.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TypedDict, cast

from servicekit.jobs.model import Job
from servicekit.state.sqlite import StateDatabase


class StateCounts(TypedDict):
    jobs: dict[str, int]  # status → live (unexpired) jobs
    keys_active: int
    keys_revoked: int


async def state_counts(database: StateDatabase, *, now: float) -> StateCounts:
    def read(db: sqlite3.Connection) -> StateCounts:
        jobs = {
            str(status): int(count)
            for status, count in db.execute(
                "SELECT status, COUNT(*) FROM jobs WHERE expires_at > ? GROUP BY status", (now,)
            )
        }
        revoked = int(db.execute("SELECT COUNT(*) FROM keys WHERE revoked_at IS NOT NULL").fetchone()[0])
        total = int(db.execute("SELECT COUNT(*) FROM keys").fetchone()[0])
        return {"jobs": jobs, "keys_active": total - revoked, "keys_revoked": revoked}

    return await database.read(read)


class JobBoard(TypedDict):
    """What an operator's live view shows: jobs running, waiting (oldest first), and just finished."""

    running: list[Job]
    queued: list[Job]
    recent: list[Job]


async def job_board(database: StateDatabase, *, now: float, recent: int = 10) -> JobBoard:
    def read(db: sqlite3.Connection) -> JobBoard:
        def jobs(sql: str, *args: object) -> list[Job]:
            return [cast(Job, json.loads(row[0])) for row in db.execute(sql, (now, *args))]

        live = "SELECT document FROM jobs WHERE expires_at > ? AND status = ? ORDER BY created_at, id"
        finished = (
            "SELECT document FROM jobs WHERE expires_at > ? AND status NOT IN ('queued', 'running') "
            "ORDER BY json_extract(document, '$.finished_at') DESC LIMIT ?"
        )
        return {"running": jobs(live, "running"), "queued": jobs(live, "queued"), "recent": jobs(finished, recent)}

    return await database.read(read)

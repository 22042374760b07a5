"""Counts an operator's view needs from the state database: jobs by status, keys known.

Read-only, one short read transaction. When the fair queue lands, waiting tickets by class
are one more ``GROUP BY`` here.
"""

from __future__ import annotations

import sqlite3
from typing import TypedDict

from servicekit.state.sqlite import StateDatabase


class StateCounts(TypedDict):
    jobs: dict[str, int]  # status → live (unexpired) jobs
    keys_active: int
    keys_revoked: int


async def state_counts(database: StateDatabase, *, now: float) -> StateCounts:
    def read(db: sqlite3.Connection) -> StateCounts:
        jobs = {str(status): int(count) for status, count in db.execute(
            "SELECT status, COUNT(*) FROM jobs WHERE expires_at > ? GROUP BY status", (now,)
        )}  # fmt: skip
        revoked = int(db.execute("SELECT COUNT(*) FROM keys WHERE revoked_at IS NOT NULL").fetchone()[0])
        total = int(db.execute("SELECT COUNT(*) FROM keys").fetchone()[0])
        return {"jobs": jobs, "keys_active": total - revoked, "keys_revoked": revoked}

    return await database.read(read)

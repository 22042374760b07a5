"""The state store's own cost: a job's create + get round trip on the SQLite database, in-process."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from servicekit.jobs.model import new_job
from servicekit.jobs.sqlite_store import SqliteJobStore
from servicekit.state.sqlite import StateDatabase

from bench.measure import median


async def job_round_trip_ms(count: int) -> tuple[float, float, float]:
    """Medians (ms) of create, get, and one full lifecycle (create, start, heartbeat, finish, get)."""
    with tempfile.TemporaryDirectory() as tmp:
        database = StateDatabase(Path(tmp) / "state")
        store = SqliteJobStore(database)
        creates, gets, lifecycles = [], [], []
        for i in range(count):
            now = time.time()
            job = new_job("m", {"prompt": f"p{i}"}, owner="bench", now=now, ttl_s=3600, start_deadline_s=900)
            started = time.perf_counter()
            await store.create(job, idempotency_key=f"k{i}")
            created = time.perf_counter()
            await store.get(job["id"], now=now)
            creates.append((created - started) * 1000)
            gets.append((time.perf_counter() - created) * 1000)
            await store.start(job["id"], now=now, lease_s=30)
            await store.heartbeat(job["id"], response="partial", now=now, lease_s=30)
            await store.finish(job["id"], "succeeded", now=now, fields={"response": "done"})
            await store.get(job["id"], now=now)
            lifecycles.append((time.perf_counter() - started) * 1000)
        database.close()
    return median(creates), median(gets), median(lifecycles)

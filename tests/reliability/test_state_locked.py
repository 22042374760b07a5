"""Another local process holding the state database's write lock never freezes chat.

Chat runs in a real server (its own event loop, in a thread); a job create waits for the
database off that loop and gives up with 503 state_busy, while /healthz keeps answering.
(servicekit's own test of the same, with a ticker: tests/state/test_sqlite_state.py.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from servicekit.jobs.sqlite_store import SqliteJobStore
from servicekit.state.factory import StateSettings
from servicekit.state.sqlite import DB_NAME, StateDatabase
from starlette.applications import Starlette

from tests.jobs.helpers import status_is, wait_for
from tests.servers import serve_in_thread

# Chat's store here waits 2.5 s at a time inside SQLite (the default is 50 ms): on chat's
# loop, that would hold /healthz up for seconds; off it, answers take milliseconds. The bound
# is generous for a loaded 2-core machine.
BUSY_TIMEOUT_S = 2.5
PROMPT_S = 1.0


async def test_healthz_answers_while_a_job_create_waits_for_a_locked_database(
    runner_app: Starlette, state_settings: StateSettings
) -> None:
    database = StateDatabase(state_settings.directory, busy_timeout_s=BUSY_TIMEOUT_S, busy_budget_s=2 * BUSY_TIMEOUT_S)
    slow_store = SqliteJobStore(database)
    with (
        serve_in_thread(runner_app) as runner_url,
        serve_in_thread(create_chat_app(ChatSettings(runner_url=runner_url), job_store=slow_store)) as chat_url,
    ):
        async with httpx.AsyncClient(base_url=chat_url, timeout=10) as client:
            first = await client.post("/v1/jobs", json={"prompt": "before the lock"})
            assert first.status_code == 202, first.text
            await wait_for(client, first.json()["id"], status_is("succeeded"))  # the runner writes no more
            holder = sqlite3.connect(f"{state_settings.directory}/{DB_NAME}", isolation_level=None, timeout=5)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                # Readers are not blocked in WAL mode: the job created before can still be read.
                assert (await client.get(f"/v1/jobs/{first.json()['id']}")).status_code == 200
                create = asyncio.create_task(client.post("/v1/jobs", json={"prompt": "while locked"}))
                probes: list[float] = []
                while not create.done():
                    started = time.monotonic()
                    health = await client.get("/healthz")
                    probes.append(time.monotonic() - started)
                    assert health.status_code == 200
                    await asyncio.sleep(0.05)  # probes spread over the wait, not a wait for anything
                refused = await create
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "state_busy"
            assert refused.headers["Retry-After"] == "1"
            assert len(probes) >= BUSY_TIMEOUT_S / 0.1  # probed all along the wait ...
            assert max(probes) < PROMPT_S, [f"{i}:{p:.3f}" for i, p in enumerate(probes) if p > 0.02]  # ... all prompt
            # Once the lock is gone, jobs are created again.
            again = await client.post("/v1/jobs", json={"prompt": "after the lock"})
            assert again.status_code == 202, again.text

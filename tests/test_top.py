"""``python -m chat.top`` rendered to a string: the running job, the waiting ones in order, recent outcomes."""

from __future__ import annotations

import io
import time

from chat.top import main, render
from rich.console import Console
from servicekit.jobs.model import new_job
from servicekit.jobs.sqlite_store import SqliteJobStore
from servicekit.state.factory import StateSettings, state_database
from servicekit.state.stats import job_board


async def _jobs(state: StateSettings) -> None:
    store = SqliteJobStore(state_database(state.directory))
    now = time.time()
    ids = {}
    for offset, owner in enumerate(("alice", "bob", "carol", "dave")):
        job = new_job("tinyllama", {"prompt": owner}, owner=owner, now=now + offset, ttl_s=3600, start_deadline_s=900)
        await store.create(job)
        ids[owner] = job["id"]
    await store.start(ids["alice"], now=now + 10, lease_s=30)
    await store.finish(ids["alice"], "succeeded", now=now + 12, fields={"timings": {"tokens_per_s": 42.5}})
    await store.start(ids["bob"], now=now + 13, lease_s=30)


async def test_the_board_shows_running_waiting_in_order_and_recent(state_settings: StateSettings) -> None:
    await _jobs(state_settings)
    board = await job_board(state_database(state_settings.directory), now=time.time())
    out = io.StringIO()
    Console(file=out, width=140).print(render(board, now=time.time() + 20))
    text = out.getvalue()
    running, waiting, recent = text.split("running")[1], text.split("waiting (2)")[1], text.split("recent")[1]
    assert "bob" in running.split("waiting")[0]
    lines = [line for line in waiting.split("recent")[0].splitlines() if "tinyllama" in line]
    assert [line.split()[1] for line in lines] == ["1", "2"]  # positions
    assert "carol" in lines[0]
    assert "dave" in lines[1]
    assert "alice" in recent
    assert "succeeded" in recent
    assert "42.5" in recent
    assert "2.0s" in recent  # took


def test_once_prints_one_frame_from_state_dir(state_settings: StateSettings) -> None:
    import asyncio

    asyncio.run(_jobs(state_settings))
    out = io.StringIO()
    assert main(["--once"], out=out, env={"STATE_DIR": state_settings.directory}) == 0
    assert "waiting (2)" in out.getvalue()
    assert main(["--once"], out=io.StringIO(), env={"JOBS_TABLE": "t", "STATE_DIR": state_settings.directory}) == 2

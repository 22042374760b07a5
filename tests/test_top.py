"""``python -m chat.top`` rendered to a string over a real queue: the running ticket, the waiting
ones in served order with positions, callers, classes and ETAs, and recent job outcomes."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from chat.top import frame, main
from rich.console import Console
from servicekit.jobs.model import new_job
from servicekit.jobs.sqlite_store import SqliteJobStore
from servicekit.queue.model import NewTicket, QueueLimits, TicketClass
from servicekit.state.factory import StateSettings, queue_store, state_database

from tests.jobs.stores import REGION, TABLE, moto_table

LIMITS = QueueLimits(max_queue=10, max_waiting_per_caller=10, batch_max_wait_s=120, lease_s=60)


def ticket(
    ticket_id: str, caller: str, ticket_class: TicketClass = "interactive", job_id: str | None = None
) -> NewTicket:
    holder = None if job_id else "another-process"
    return {
        "id": ticket_id,
        "caller": caller,
        "weight": 1,
        "ticket_class": ticket_class,
        "model": "tinyllama",
        "holder": holder,
        "job_id": job_id,
    }


async def fill(state: StateSettings, now: float) -> None:
    """A finished job (with its speed), one running ticket and four waiting, added in a different order
    than they are served: alice's second request waits behind bob's first (fair share), the job last."""
    jobs = SqliteJobStore(state_database(state.directory))
    done = new_job("tinyllama", {"prompt": "x"}, owner="erin", now=now - 30, ttl_s=3600, start_deadline_s=900)
    await jobs.create(done)
    await jobs.start(done["id"], now=now - 20, lease_s=30)
    await jobs.finish(done["id"], "succeeded", now=now - 18, fields={"timings": {"tokens_per_s": 42.5}})
    queue = queue_store(state, LIMITS)
    await queue.enqueue(ticket("run", "dave"), max_waiting=None, now=now - 9, claim_as="another-process")
    await queue.enqueue(ticket("a1", "alice"), max_waiting=None, now=now - 8)
    await queue.enqueue(ticket("a2", "alice"), max_waiting=None, now=now - 7)
    await queue.enqueue(ticket("job-0123456789", "carol", "batch", "0123456789"), max_waiting=None, now=now - 6)
    await queue.enqueue(ticket("b1", "bob"), max_waiting=None, now=now - 5)


async def test_a_frame_shows_the_queue_in_served_order(state_settings: StateSettings) -> None:
    await fill(state_settings, time.time())
    out = io.StringIO()
    Console(file=out, width=160).print(await frame(queue_store(state_settings, LIMITS), state_settings))
    text = out.getvalue()
    running, rest = text.split("running", 1)[1].split("waiting (4)")
    waiting, recent = rest.split("recent jobs")
    assert "dave" in running
    assert "interactive" in running
    assert "9." in running  # elapsed, about 9 s
    rows = [line.replace("│", " ").split() for line in waiting.splitlines() if "tinyllama" in line]
    # position, caller, class: alice, then bob (fair share), then alice again, the job last
    assert [row[:3] for row in rows] == [
        ["1", "alice", "interactive"],
        ["2", "bob", "interactive"],
        ["3", "alice", "interactive"],
        ["4", "carol", "batch"],
    ]
    assert "job" in rows[3]
    assert "01234567" in rows[3]
    etas = [float(row[-1].rstrip("s")) for row in rows]
    assert etas == sorted(etas)
    assert etas[1] > etas[0]
    assert "erin" in recent
    assert "succeeded" in recent
    assert "42.5" in recent
    assert "2.0s" in recent


def test_once_prints_one_frame_from_state_dir(state_settings: StateSettings) -> None:
    out = io.StringIO()
    assert main(["--once"], out=out, env={"STATE_DIR": state_settings.directory}) == 0
    assert "the slot is free" in out.getvalue()
    assert "waiting (0)" in out.getvalue()
    asyncio.run(fill(state_settings, time.time()))
    out = io.StringIO()
    assert main(["--once"], out=out, env={"STATE_DIR": state_settings.directory}) == 0
    assert "waiting (4)" in out.getvalue()
    assert "dave" in out.getvalue()


def test_a_table_shows_the_queue_in_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--table``: the same queue read from DynamoDB (moto), without the recent jobs (a scan)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with moto_table():
        state = StateSettings(table=TABLE)

        async def enqueue() -> None:
            queue = queue_store(state, LIMITS)
            now = time.time()
            await queue.enqueue(ticket("run", "dave"), max_waiting=None, now=now - 3, claim_as="another-process")
            await queue.enqueue(ticket("a1", "alice"), max_waiting=None, now=now - 2)
            await queue.enqueue(ticket("b1", "bob"), max_waiting=None, now=now - 1)

        asyncio.run(enqueue())
        out = io.StringIO()
        assert main(["--once", "--table", TABLE], out=out, env={}) == 0
    text = out.getvalue()
    assert "waiting (2)" in text
    assert text.index("dave") < text.index("alice") < text.index("bob")
    assert "recent jobs" not in text

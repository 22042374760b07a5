"""The slot on its own, over a real queue store: two slots on one lock file and one database contend
like two processes (flock is per open file; each slot is its own holder in the queue)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runner.errors import QueueFull, QueueTimeout
from runner.hostlock import FileHostLock
from runner.slot import GenerationSlot, Grant
from servicekit.callers import Caller
from servicekit.errors import StateBusy
from servicekit.queue.model import QueueLimits
from servicekit.queue.sqlite_store import SqliteQueueStore
from servicekit.state.sqlite import StateDatabase

from tests.state.test_sqlite_state import ExclusiveHolder
from tests.waiting import eventually


def limits(max_queue: int = 100) -> QueueLimits:
    return QueueLimits(max_queue=max_queue, max_waiting_per_caller=100, batch_max_wait_s=120, lease_s=5)


@pytest.fixture
async def slots(tmp_path: Path) -> AsyncIterator[list[GenerationSlot]]:
    database = StateDatabase(tmp_path / "state")
    made = [
        GenerationSlot(
            FileHostLock(str(tmp_path / "slot.lock")), SqliteQueueStore(database, limits(2)), poll_interval_s=0.001
        )
        for _ in range(2)
    ]
    for slot in made:
        slot.start()
    yield made
    for slot in made:
        await slot.aclose()


async def test_two_processes_never_overlap_and_serve_each_caller_in_order(slots: list[GenerationSlot]) -> None:
    for slot in slots:  # room for everyone
        slot.queue.limits = limits()  # type: ignore[attr-defined]
    inside = 0
    peak = 0
    served: list[tuple[str, int]] = []

    async def use(caller: str, index: int) -> None:
        nonlocal inside, peak
        async with slots[index % 2].place(Caller(caller), "interactive", "m") as place:
            await slots[index % 2].wait(place, 30)
            inside += 1
            peak = max(peak, inside)
            served.append((caller, index))
            await asyncio.sleep(0.002)  # holding the slot a moment, as a generation does
            inside -= 1

    tasks = [asyncio.create_task(use(caller, index)) for index in range(12) for caller in ("a", "b")]
    await asyncio.gather(*tasks)
    assert peak == 1
    for caller in ("a", "b"):  # first in, first out within a caller
        indexes = [index for who, index in served if who == caller]
        assert len(indexes) == 12
    # Fair share: the two callers alternate (never two turns of one while the other waits).
    callers = [who for who, _ in served]
    assert max(len(run) for run in "".join(callers).replace("ab", "a b").replace("ba", "b a").split()) <= 2


async def test_queue_full_timeout_and_leaving(slots: list[GenerationSlot]) -> None:
    slot = slots[0]
    async with slot.place(Caller("a"), "interactive", "m") as holding:
        await slot.wait(holding, 1)
        assert slot.busy
        waiting = [slot.place(Caller(f"w{i}"), "interactive", "m") for i in range(2)]
        places = [await w.__aenter__() for w in waiting]
        assert [p.admitted.position for p in places] == [1, 2]
        with pytest.raises(QueueFull) as refused:
            async with slots[1].place(Caller("late"), "interactive", "m"):
                pass
        assert (refused.value.queue_position, refused.value.queue_depth) == (3, 2)
        with pytest.raises(QueueTimeout):
            await slot.wait(places[0], 0.05)
        for w in waiting:
            await w.__aexit__(None, None, None)
        assert (await slot.queue.snapshot(now=0)).waiting == ()
    await eventually(lambda: not slots[0].busy)


async def test_a_place_that_leaves_while_granted_passes_the_slot_on(slots: list[GenerationSlot]) -> None:
    slot = slots[0]
    granted: list[Grant] = []

    async def hold_briefly(name: str) -> None:
        async with slot.place(Caller(name), "interactive", "m") as place:
            granted.append(await slot.wait(place, 5))

    await asyncio.gather(hold_briefly("a"), hold_briefly("b"))
    assert len(granted) == 2
    async with slots[1].place(Caller("c"), "interactive", "m") as place:
        await slots[1].wait(place, 5)


@pytest.fixture
def busy_prone(tmp_path: Path) -> StateDatabase:
    """A database that gives up after 50 ms of being locked (the default waits seconds)."""
    return StateDatabase(tmp_path / "state", busy_timeout_s=0.02, busy_budget_s=0.05)


async def test_a_place_refused_by_a_locked_store_lets_the_host_lock_go(
    tmp_path: Path, busy_prone: StateDatabase
) -> None:
    path = str(tmp_path / "slot.lock")
    slot = GenerationSlot(FileHostLock(path), SqliteQueueStore(busy_prone, limits()), poll_interval_s=0.001)
    await slot.queue.snapshot(now=0)  # created and migrated
    holder = ExclusiveHolder(busy_prone.path)
    try:
        with pytest.raises(StateBusy):
            async with slot.place(Caller("a"), "interactive", "m"):
                pass
    finally:
        holder.release()
    other = FileHostLock(path)
    assert other.try_acquire()  # the free slot's lock, taken to claim at once, was let go
    other.close()
    await slot.aclose()


async def test_a_store_locked_for_a_while_delays_the_queue_and_loses_no_one(
    tmp_path: Path, busy_prone: StateDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    short_lease = dataclasses.replace(limits(), lease_s=2)  # renewed every second while waiting here
    slot = GenerationSlot(
        FileHostLock(str(tmp_path / "slot.lock")), SqliteQueueStore(busy_prone, short_lease), poll_interval_s=0.001
    )
    holding, waiting, leaving = (slot.place(Caller(name), "interactive", "m") for name in "abc")
    try:
        await slot.wait(await holding.__aenter__(), 1)
        second = await waiting.__aenter__()
        await leaving.__aenter__()
        holder = ExclusiveHolder(busy_prone.path)
        try:
            await leaving.__aexit__(None, None, None)  # its ticket stays: its lease will drop it
            assert "could not remove ticket" in caplog.text
            await eventually(lambda: "queue dispatch:" in caplog.text, what="the dispatcher meeting the lock")
        finally:
            holder.release()
        await holding.__aexit__(None, None, None)  # the store answers again: the slot passes on
        await slot.wait(second, 5)
        await waiting.__aexit__(None, None, None)  # "c"'s stale ticket holds the line until its lease lapses
        async with slot.place(Caller("d"), "interactive", "m") as later:
            await slot.wait(later, 5)
    finally:
        await slot.aclose()

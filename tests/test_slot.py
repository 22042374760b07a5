"""The slot on its own, over a real queue store: two slots on one lock file and one database contend
like two processes (flock is per open file; each slot is its own holder in the queue)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runner.errors import QueueFull, QueueTimeout
from runner.hostlock import FileHostLock
from runner.slot import GenerationSlot, Grant
from servicekit.callers import Caller
from servicekit.queue.model import QueueLimits
from servicekit.queue.sqlite_store import SqliteQueueStore
from servicekit.state.sqlite import StateDatabase

from tests.waiting import eventually


def limits(max_queue: int = 100) -> QueueLimits:
    return QueueLimits(max_queue=max_queue, max_waiting_per_caller=100, batch_max_wait_s=120, lease_s=5)


@pytest.fixture
async def slots(tmp_path: Path) -> AsyncIterator[list[GenerationSlot]]:
    database = StateDatabase(tmp_path / "state")
    made = [
        GenerationSlot(FileHostLock(str(tmp_path / "slot.lock")), SqliteQueueStore(database, limits(2)),
                       poll_interval_s=0.001)
        for _ in range(2)
    ]  # fmt: skip
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

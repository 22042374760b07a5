"""The slot on its own: two FileHostLocks on one file contend like two processes (flock is per open file)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from runner.errors import QueueFull, QueueTimeout
from runner.hostlock import FileHostLock
from runner.slot import GenerationSlot


def make_slot(lock: Path, *, max_queue: int = 8) -> GenerationSlot:
    return GenerationSlot(FileHostLock(str(lock)), max_queue=max_queue, poll_interval_s=0.001, generation_estimate_s=1)


async def test_a_waiter_that_leaves_does_not_break_the_next_request(tmp_path: Path) -> None:
    lock = tmp_path / "slot.lock"
    other_process = FileHostLock(str(lock))
    assert other_process.try_acquire()
    slot = make_slot(lock)
    leaving = asyncio.create_task(slot.hold(10).__aenter__())
    await asyncio.sleep(0.01)  # queued; this process's dispatcher is polling the lock
    leaving.cancel()
    other_process.release()
    # In the same instant a new request arrives, while the dispatcher is still between polls.
    async with slot.hold(1) as ticket:
        assert ticket.queue_ms < 1000
    assert slot.queue_depth == 0


async def test_fifo_within_a_process_and_exclusion_across_processes(tmp_path: Path) -> None:
    lock = tmp_path / "slot.lock"
    slots = [make_slot(lock, max_queue=100), make_slot(lock, max_queue=100)]
    inside = 0
    peak = 0
    order: dict[int, list[int]] = {0: [], 1: []}
    served: list[int] = []

    async def use(index: int) -> None:
        nonlocal inside, peak
        async with slots[index % 2].hold(30):
            inside += 1
            peak = max(peak, inside)
            order[index % 2].append(index)
            served.append(index % 2)
            await asyncio.sleep(0.001)
            inside -= 1

    tasks = []
    for index in range(40):
        tasks.append(asyncio.create_task(use(index)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert peak == 1
    assert order[0] == sorted(order[0])
    assert order[1] == sorted(order[1])
    assert len(order[0]) == len(order[1]) == 20
    # A releasing process steps aside when the other waits: turns alternate instead of one
    # process draining its whole queue first.
    switches = sum(a != b for a, b in itertools.pairwise(served))
    assert switches >= 10, served


async def test_queue_full_and_timeout(tmp_path: Path) -> None:
    slot = make_slot(tmp_path / "slot.lock", max_queue=1)
    async with slot.hold(1):
        waiting = asyncio.create_task(slot.hold(10).__aenter__())
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await slot.hold(1).__aenter__()
        waiting.cancel()
        await asyncio.sleep(0)
        with pytest.raises(QueueTimeout):
            async with slot.hold(0.05):
                pass
    async with slot.hold(1):
        assert slot.busy
    assert not slot.busy

"""The settle on its own: how long it waits, when, and how it learns that a holder died.

(End to end, with real runner processes and a fake Ollama that stops at its next token:
tests/reliability/test_one_at_a_time.py.)
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from runner.hostlock import FileHostLock
from runner.settle import SETTLE_FACTOR, HolderMark, Settle, SettlingHostLock, TokenPace
from runner.slot import GenerationSlot
from servicekit.callers import Caller
from servicekit.queue.model import QueueLimits
from servicekit.queue.sqlite_store import SqliteQueueStore
from servicekit.state.sqlite import StateDatabase


def settle_at(tmp_path: Path, max_s: float = 0.25) -> Settle:
    return Settle(max_s=max_s, mark=HolderMark(str(tmp_path / "slot.lock.holder")))


def test_the_delay_is_about_one_recent_token_interval_capped() -> None:
    pace = TokenPace()
    settle = Settle(max_s=0.25, mark=None, pace=pace)
    assert settle.delay_s() == 0.25  # nothing measured yet: the cap
    for gap in (0.02, 0.021, 0.019, 0.5):  # one stall does not move the median
        pace.record(gap)
    assert settle.delay_s() == pytest.approx(((0.02 + 0.021) / 2) * SETTLE_FACTOR)
    for _ in range(100):
        pace.record(1.0)  # a slow model: capped
    assert settle.delay_s() == 0.25


def test_a_holder_that_never_released_is_seen_by_the_next_taker(tmp_path: Path) -> None:
    dead, survivor = settle_at(tmp_path), settle_at(tmp_path)
    dead.lock_taken()
    survivor.lock_taken()  # the kernel freed the lock of a holder that never marked its release
    assert survivor.took_over
    survivor.lock_released()
    after_clean = settle_at(tmp_path)
    after_clean.lock_taken()
    assert not after_clean.took_over


async def test_takeover_settles_once_before_the_first_send(tmp_path: Path) -> None:
    settle_at(tmp_path, max_s=0.05).lock_taken()  # a holder that died
    survivor = settle_at(tmp_path, max_s=0.05)
    survivor.lock_taken()
    started = time.perf_counter()
    await survivor.before_first_send_after_takeover()
    assert time.perf_counter() - started >= 0.05
    started = time.perf_counter()
    await survivor.before_first_send_after_takeover()  # only once per takeover
    assert time.perf_counter() - started < 0.05


async def test_a_cancellation_during_the_settle_waits_it_out_then_propagates() -> None:
    settle = Settle(max_s=0.1, mark=None)
    waiting = asyncio.create_task(settle.after_abnormal_end())
    await asyncio.sleep(0)  # one turn of the loop: the task starts its settle
    waiting.cancel()
    started = time.perf_counter()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert time.perf_counter() - started >= 0.08  # releasing early is the bug the settle prevents


async def test_the_slot_settles_after_a_bad_end_and_not_after_a_clean_one(tmp_path: Path) -> None:
    lock = str(tmp_path / "slot.lock")
    settle = Settle(max_s=0.05, mark=HolderMark(lock + ".holder"))
    limits = QueueLimits(max_queue=4, max_waiting_per_caller=4, batch_max_wait_s=120, lease_s=5)
    queue = SqliteQueueStore(StateDatabase(tmp_path / "state"), limits)
    slot = GenerationSlot(FileHostLock(lock), queue, settle=settle, poll_interval_s=0.001)
    async with slot.place(Caller("c"), "interactive", "m") as place:
        ticket = await slot.wait(place, 1)
        ticket.ended_cleanly = True
    assert settle.waited_s == 0

    async def failing_generation() -> None:
        async with slot.place(Caller("c"), "interactive", "m") as place:
            await slot.wait(place, 1)
            raise RuntimeError("the generation failed")

    with pytest.raises(RuntimeError):
        await failing_generation()
    assert settle.waited_s >= 0.05
    # The slot is free again, and the mark says it was let go cleanly.
    assert not HolderMark(lock + ".holder").take()


def test_a_lock_not_held_never_overwrites_another_holders_mark(tmp_path: Path) -> None:
    lock = str(tmp_path / "slot.lock")
    holder = SettlingHostLock(FileHostLock(lock), settle_at(tmp_path))
    other = SettlingHostLock(FileHostLock(lock), settle_at(tmp_path))
    assert holder.try_acquire()
    assert not other.try_acquire()
    other.release()  # not held: must not mark "free" over the holder's "held"
    assert HolderMark(lock + ".holder").take()  # still "held": a death now would be noticed


def test_the_holder_file_is_never_followed_through_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    os.symlink(target, tmp_path / "slot.lock.holder")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):  # ELOOP
        HolderMark(str(tmp_path / "slot.lock.holder")).take()
    assert target.read_text() == ""

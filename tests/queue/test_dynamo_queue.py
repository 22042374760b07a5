"""What the DynamoDB queue store does beyond the shared contract: races lost and retried, the
state item kept small, running tickets with leases (a Lambda invocation that died)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import anyio
import pytest
from servicekit.queue.dynamo_store import STATE_ID, DynamoQueueStore
from servicekit.queue.model import NewTicket, QueueLimits

from tests.jobs.stores import moto_table

LIMITS = QueueLimits(max_queue=50, max_waiting_per_caller=50, batch_max_wait_s=120, lease_s=5, default_estimate_s=2)


@pytest.fixture
def table() -> Iterator[object]:
    with moto_table() as table:
        yield table


def ticket(ticket_id: str, caller: str) -> NewTicket:
    return {
        "id": ticket_id,
        "caller": caller,
        "weight": 1,
        "ticket_class": "interactive",
        "model": "m",
        "holder": "chat",
        "job_id": None,
    }


async def test_one_callers_requests_at_once_each_get_their_own_turn(table: object) -> None:
    # Five invocations of chat, each with its own store, enqueue for one caller at the same moment:
    # the conditional write on the caller's finish makes the losers read again and go behind.
    # One DynamoDB call at a time (each is atomic in DynamoDB; moto checks a condition and writes
    # in two steps, so two threads could both pass it), while the five enqueues still interleave
    # call by call: all five read before any writes.
    anyio.to_thread.current_default_thread_limiter().total_tokens = 1
    stores = [DynamoQueueStore(table, limits=LIMITS) for _ in range(5)]
    await asyncio.gather(*(s.enqueue(ticket(f"t{i}", "C"), max_waiting=None, now=1.0) for i, s in enumerate(stores)))
    waiting = (await stores[0].snapshot(now=1.0)).waiting
    assert sorted(t["vstart"] for t in waiting) == [0, 1, 2, 3, 4]
    assert [t["vstart"] for t in waiting] == [0, 1, 2, 3, 4]  # served in the order the writes won


async def test_the_state_item_forgets_callers_the_clock_has_passed(table: object) -> None:
    store = DynamoQueueStore(table, limits=LIMITS)
    for index in range(30):
        await store.enqueue(ticket(f"t{index}", f"caller{index}"), max_waiting=None, now=1.0)
        claimed = await store.claim("runner", [f"t{index}"], now=1.0)
        assert claimed is not None
        await store.finish(claimed["id"], holder="runner", mine=[], now=1.0, duration_s=0.1)
    state = table.get_item(Key={"id": STATE_ID}, ConsistentRead=True)["Item"]  # type: ignore[attr-defined]
    finishes = [name for name in state if name.startswith("f#")]
    assert len(finishes) <= 2, finishes  # the last round's, not thirty callers'
    assert "ids" not in state  # every ticket gone from the index


async def test_a_running_ticket_stops_counting_once_its_lease_lapses(table: object) -> None:
    store = DynamoQueueStore(table, limits=LIMITS)
    await store.enqueue(ticket("dead", "D"), max_waiting=None, now=1.0)
    assert await store.claim("gone", ["dead"], now=1.0) is not None
    await store.enqueue(ticket("next", "N"), max_waiting=None, now=2.0)
    assert (await store.snapshot(now=5.0)).running is not None  # its invocation may still be running
    await store.renew(["dead", "next"], now=5.0)  # it is: lease to 10
    assert (await store.snapshot(now=9.0)).running is not None
    await store.renew(["next"], now=9.0)  # the waiting chat is alive; the runner is not
    after = await store.snapshot(now=11.0)  # it stopped renewing: it died
    assert after.running is None
    assert after.standings["next"].position == 1
    claimed = await store.claim("runner", ["next"], now=11.0)
    assert claimed is not None  # and the dead one's ticket is swept in the same write
    assert [t["id"] for t in (await store._read()).tickets] == ["next"]

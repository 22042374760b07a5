"""The queue store's contract: order, caps, claims and ETAs, over SQLite and over DynamoDB (moto).

Each test drives a store as several runner processes would ("p1", "p2" are holders); only a
holder of the slot calls ``claim``/``finish``, as the slot does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servicekit.errors import QueueFull, TooManyWaiting
from servicekit.queue.dynamo_store import DynamoQueueStore
from servicekit.queue.model import NewTicket, QueueLimits, TicketClass
from servicekit.queue.sqlite_store import SqliteQueueStore
from servicekit.queue.store import QueueStore
from servicekit.state.sqlite import StateDatabase

from tests.jobs.stores import KINDS, moto_table

LIMITS = QueueLimits(max_queue=20, max_waiting_per_caller=12, batch_max_wait_s=120, lease_s=5, default_estimate_s=2)


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueStore]:
    if request.param == "dynamodb":
        with moto_table() as table:
            yield DynamoQueueStore(table, limits=LIMITS)
        return
    database = StateDatabase(tmp_path / "state")
    yield SqliteQueueStore(database, LIMITS)
    database.close()


def ticket(
    ticket_id: str, caller: str, *, weight: int = 1, klass: TicketClass = "interactive", holder: str | None = "p1"
) -> NewTicket:
    batch = klass == "batch"
    return {
        "id": ticket_id,
        "caller": caller,
        "weight": weight,
        "ticket_class": klass,
        "model": "m",
        "holder": None if batch else holder,
        "job_id": ticket_id if batch else None,
    }


async def served(store: QueueStore, now: float, mine: list[str]) -> list[str]:
    """Run the queue dry as one holder of the slot: the ids in the order they are claimed."""
    order: list[str] = []
    claimed = await store.claim("p1", mine, now=now)
    while claimed is not None:
        order.append(claimed["id"])
        claimed = await store.finish(claimed["id"], holder="p1", mine=mine, now=now, duration_s=None)
    return order


async def test_the_readme_example_one_caller_cannot_crowd_out_another(store: QueueStore) -> None:
    ids = []
    for index in range(4):
        ids.append(f"h{index}")
        await store.enqueue(ticket(f"h{index}", "H"), max_waiting=None, now=1.0)
    first = await store.claim("p1", ids, now=1.0)
    assert first is not None
    assert first["id"] == "h0"
    standing = await store.enqueue(ticket("l0", "L"), max_waiting=None, now=2.0)
    assert standing.position == 1  # next: H has had its turn this round
    await store.enqueue(ticket("w0", "W", weight=2), max_waiting=None, now=3.0)
    await store.enqueue(ticket("w1", "W", weight=2), max_waiting=None, now=3.0)
    await store.enqueue(ticket("w2", "W", weight=2), max_waiting=None, now=3.0)
    rest = await store.finish("h0", holder="p1", mine=[*ids, "l0", "w0", "w1", "w2"], now=4.0, duration_s=1.0)
    assert rest is not None
    order = [rest["id"], *await served_after(store, rest["id"], [*ids, "l0", "w0", "w1", "w2"])]
    # Round 0 (virtual time 0): h0 (ran), l0, w0, w1 (weight 2: two turns); round 1: h1, w2; then H alone.
    assert order == ["l0", "w0", "w1", "h1", "w2", "h2", "h3"]


async def served_after(store: QueueStore, running: str, mine: list[str]) -> list[str]:
    order: list[str] = []
    claimed = await store.finish(running, holder="p1", mine=mine, now=5.0, duration_s=None)
    while claimed is not None:
        order.append(claimed["id"])
        claimed = await store.finish(claimed["id"], holder="p1", mine=mine, now=5.0, duration_s=None)
    return order


async def test_weight_two_gets_two_turns_per_round(store: QueueStore) -> None:
    mine = []
    for index in range(4):
        for caller, weight in (("one", 1), ("two", 2)):
            mine.append(f"{caller}{index}")
            await store.enqueue(ticket(f"{caller}{index}", caller, weight=weight), max_waiting=None, now=1.0)
    order = await served(store, 1.0, mine)
    assert [t.rstrip("0123456789") for t in order] == ["one", "two", "two", "one", "two", "two", "one", "one"]


async def test_interactive_before_batch_and_old_batch_promoted(store: QueueStore) -> None:
    await store.enqueue(ticket("job-old", "J", klass="batch"), max_waiting=None, now=0.0)
    await store.enqueue(ticket("job-new", "J", klass="batch"), max_waiting=None, now=100.0)
    await store.enqueue(ticket("chat", "C"), max_waiting=None, now=100.0)
    assert await served(store, 101.0, ["chat"]) == ["chat", "job-old", "job-new"]
    await store.enqueue(ticket("job-old", "J", klass="batch"), max_waiting=None, now=0.0)
    await store.enqueue(ticket("chat", "C"), max_waiting=None, now=118.0)
    # 121 s after it joined, the old job goes ahead of the waiting chat.
    assert await served(store, 121.0, ["chat"]) == ["job-old", "chat"]


async def test_caps_refuse_with_the_position_the_ticket_would_have(store: QueueStore) -> None:
    await store.enqueue(ticket("a0", "A"), max_waiting=None, now=1.0)
    # With nothing running, the head is being handed the slot: it does not count as waiting.
    await store.enqueue(ticket("a1", "A"), max_waiting=1, now=1.0)
    assert await store.claim("p1", ["a0"], now=1.0) is not None
    await store.enqueue(ticket("a2", "A"), max_waiting=2, now=1.0)
    with pytest.raises(TooManyWaiting) as too_many:
        await store.enqueue(ticket("a3", "A"), max_waiting=2, now=1.0)
    assert (too_many.value.status, too_many.value.queue_position, too_many.value.queue_depth) == (429, 3, 2)
    assert too_many.value.retry_after_s == 6  # a0's 2 s (the default estimate), then a1's and a2's
    for index in range(18):
        await store.enqueue(ticket(f"b{index}", f"B{index}"), max_waiting=None, now=1.0)
    with pytest.raises(QueueFull) as full:
        await store.enqueue(ticket("c", "C"), max_waiting=None, now=1.0)
    assert (full.value.status, full.value.queue_depth) == (503, 20)
    assert (await store.snapshot(now=1.0)).standings.keys() == {"a1", "a2", *(f"b{i}" for i in range(18))}


async def test_only_the_head_is_claimed_and_only_by_its_holder_or_anyone_for_a_job(store: QueueStore) -> None:
    await store.enqueue(ticket("x", "X", holder="p2"), max_waiting=None, now=1.0)
    await store.enqueue(ticket("y", "Y", holder="p1"), max_waiting=None, now=1.0)
    assert await store.claim("p1", ["y"], now=1.0) is None  # x is next, and it is p2's
    claimed = await store.claim("p2", ["x"], now=1.0)
    assert claimed is not None
    assert claimed["status"] == "running"
    await store.enqueue(ticket("job", "J", klass="batch"), max_waiting=None, now=1.0)
    nxt = await store.finish("x", holder="p2", mine=[], now=2.0, duration_s=1.0)
    assert nxt is None  # y is p1's
    mine = await store.claim("p1", ["y"], now=2.0)
    assert mine is not None
    assert mine["id"] == "y"
    job = await store.finish("y", holder="p1", mine=[], now=3.0, duration_s=1.0)
    assert job is not None
    assert job["job_id"] == "job"  # any holder runs a job


async def test_a_job_is_queued_once_and_reports_its_position(store: QueueStore) -> None:
    await store.enqueue(ticket("c", "C"), max_waiting=None, now=1.0)
    first = await store.enqueue(ticket("j", "J", klass="batch"), max_waiting=None, now=1.0)
    again = await store.enqueue(ticket("j", "J", klass="batch"), max_waiting=None, now=1.5)
    assert first.position == again.position == 2
    assert len((await store.snapshot(now=2.0)).waiting) == 2
    standing = await store.job_standing("j", now=2.0)
    assert standing is not None
    assert standing.position == 2


async def test_tickets_of_a_process_that_stopped_renewing_drop_out(store: QueueStore) -> None:
    await store.enqueue(ticket("dead", "D", holder="gone"), max_waiting=None, now=1.0)
    await store.enqueue(ticket("live", "L", holder="p1"), max_waiting=None, now=1.0)
    await store.renew(["live"], now=5.0)
    snapshot = await store.snapshot(now=7.0)  # "dead"'s lease ended at 6
    assert [t["id"] for t in snapshot.waiting] == ["live"]
    assert snapshot.standings["live"].position == 1


async def test_eta_is_the_expected_time_of_everyone_ahead(store: QueueStore) -> None:
    await store.enqueue(ticket("a", "A"), max_waiting=None, now=0.0)
    await store.claim("p1", ["a"], now=0.0)
    await store.enqueue(ticket("b", "B"), max_waiting=None, now=0.0)
    await store.finish("a", holder="p1", mine=["b"], now=3.0, duration_s=3.0)  # b runs: the model takes ~3 s
    await store.enqueue(ticket("c", "C"), max_waiting=None, now=4.0)
    await store.enqueue(ticket("d", "D"), max_waiting=None, now=4.0)
    snapshot = await store.snapshot(now=4.0)
    assert snapshot.standings["c"].eta_s == pytest.approx(2.0)  # b's remaining 3 - 1
    assert snapshot.standings["d"].eta_s == pytest.approx(5.0)  # then c's 3
    assert snapshot.depth_by_class() == {"interactive": 2, "batch": 0}


async def test_once_nothing_waits_the_round_is_over_and_a_returning_caller_starts_afresh(store: QueueStore) -> None:
    for index in range(3):
        await store.enqueue(ticket(f"r{index}", "R"), max_waiting=None, now=1.0)
    assert await served(store, 1.0, ["r0", "r1", "r2"]) == ["r0", "r1", "r2"]
    # R had three turns in the last busy spell; that is forgotten once the queue went idle.
    await store.enqueue(ticket("r3", "R"), max_waiting=None, now=2.0)
    await store.enqueue(ticket("n0", "N"), max_waiting=None, now=2.0)
    assert await served(store, 2.0, ["r3", "n0"]) == ["r3", "n0"]

"""One contract, two stores: SqliteJobStore and DynamoJobStore (DynamoDB through moto)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from servicekit.errors import IdempotencyConflict
from servicekit.jobs.dynamo_store import DynamoJobStore
from servicekit.jobs.model import Job, new_job, view
from servicekit.jobs.store import JobStore

from tests.jobs.stores import KINDS, make_store

NOW = 1_800_000_000.0
LEASE = 30.0


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    with make_store(request.param, tmp_path) as made:
        yield made


def job(prompt: str = "hi", now: float = NOW, owner: str = "alice") -> Job:
    return new_job("tinyllama", {"prompt": prompt}, owner=owner, now=now, ttl_s=86_400, start_deadline_s=900)


async def test_create_then_get(store: JobStore) -> None:
    created, fresh = await store.create(job())
    assert fresh is True
    got = await store.get(created["id"], now=NOW + 1)
    assert got is not None
    assert view(got) == view(created)
    assert view(got)["status"] == "queued"
    assert view(got)["created_at"] == "2027-01-15T08:00:00.000Z"
    assert await store.get("0" * 32, now=NOW) is None


async def test_lifecycle_queued_running_succeeded(store: JobStore) -> None:
    created, _ = await store.create(job())
    started = await store.start(created["id"], now=NOW + 2, lease_s=LEASE)
    assert started is not None
    assert started["status"] == "running"
    assert started["started_at"] == NOW + 2
    assert await store.heartbeat(created["id"], response="partial", now=NOW + 3, lease_s=LEASE)
    assert (await store.get(created["id"], now=NOW + 3))["response"] == "partial"  # type: ignore[index]
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    assert await store.finish(created["id"], "succeeded", now=NOW + 4, fields={"response": "done!", "usage": usage})
    final = await store.get(created["id"], now=NOW + 5)
    assert final is not None
    assert (final["status"], final["response"], final["usage"], final["finished_at"]) == (
        "succeeded",
        "done!",
        usage,
        NOW + 4,
    )
    assert final["lease_until"] is None


async def test_a_job_starts_at_most_once(store: JobStore) -> None:
    created, _ = await store.create(job())
    if isinstance(store, DynamoJobStore):
        # DynamoDB applies a conditional write atomically; moto's emulation does not under
        # concurrent threads, so the duplicate deliveries arrive one after another here.
        results = [await store.start(created["id"], now=NOW + 1, lease_s=LEASE) for _ in range(5)]
    else:
        results = await asyncio.gather(*(store.start(created["id"], now=NOW + 1, lease_s=LEASE) for _ in range(5)))
    assert sum(r is not None for r in results) == 1


async def test_cancel_while_queued_and_while_running(store: JobStore) -> None:
    queued, _ = await store.create(job("a"))
    cancelled = await store.cancel(queued["id"], now=NOW + 1)
    assert cancelled is not None
    assert cancelled["status"] == "cancelled"
    assert await store.start(queued["id"], now=NOW + 2, lease_s=LEASE) is None  # never reaches Ollama

    running, _ = await store.create(job("b"))
    await store.start(running["id"], now=NOW + 1, lease_s=LEASE)
    after = await store.cancel(running["id"], now=NOW + 2)
    assert after is not None
    assert after["status"] == "cancelled"
    # the runner learns it at its next heartbeat, and cannot finish it any more
    assert await store.heartbeat(running["id"], response="x", now=NOW + 3, lease_s=LEASE) is False
    assert await store.finish(running["id"], "succeeded", now=NOW + 3, fields={"response": "x"}) is False


async def test_finished_jobs_stay_as_they_are(store: JobStore) -> None:
    created, _ = await store.create(job())
    await store.start(created["id"], now=NOW + 1, lease_s=LEASE)
    await store.finish(created["id"], "failed", now=NOW + 2, fields={"error": {"code": "upstream_error"}})
    again = await store.cancel(created["id"], now=NOW + 3)
    assert again is not None
    assert again["status"] == "failed"
    assert await store.settle(created["id"], now=NOW + 4, status="expired", error={"code": "x"}) is False


async def test_not_started_before_the_deadline_is_expired(store: JobStore) -> None:
    created, _ = await store.create(job())
    late = NOW + 901
    assert await store.start(created["id"], now=late, lease_s=LEASE) is None
    got = await store.get(created["id"], now=late)
    assert got is not None
    assert got["status"] == "expired"
    assert got["error"] is not None
    assert got["error"]["code"] == "job_expired"


async def test_running_past_its_lease_is_failed_as_runner_lost(store: JobStore) -> None:
    created, _ = await store.create(job())
    await store.start(created["id"], now=NOW + 1, lease_s=LEASE)
    got = await store.get(created["id"], now=NOW + 1 + LEASE + 1)
    assert got is not None
    assert got["status"] == "failed"
    assert got["error"] is not None
    assert got["error"]["code"] == "runner_lost"


async def test_past_the_ttl_a_job_is_gone(store: JobStore) -> None:
    created, _ = await store.create(job())
    assert await store.get(created["id"], now=NOW + 86_401) is None


async def test_idempotency_key_returns_the_same_job(store: JobStore) -> None:
    first, created = await store.create(job(), idempotency_key="order-42")
    second, created_again = await store.create(job(now=NOW + 10), idempotency_key="order-42")
    assert (created, created_again) == (True, False)
    assert second["id"] == first["id"]
    other, _ = await store.create(job(), idempotency_key="order-43")
    assert other["id"] != first["id"]
    with pytest.raises(IdempotencyConflict):
        await store.create(job("something else"), idempotency_key="order-42")
    # after 24 h the key is free again
    later, fresh = await store.create(job(now=NOW + 86_401), idempotency_key="order-42")
    assert fresh is True
    assert later["id"] != first["id"]


async def test_queue_position_while_queued_only(store: JobStore) -> None:
    created, _ = await store.create(job())
    await store.set_queue_position(created["id"], 3)
    assert view(await store.get(created["id"], now=NOW))["queue_position"] == 3  # type: ignore[arg-type]
    await store.start(created["id"], now=NOW + 1, lease_s=LEASE)
    assert view(await store.get(created["id"], now=NOW + 1))["queue_position"] is None  # type: ignore[arg-type]


async def test_delete(store: JobStore) -> None:
    created, _ = await store.create(job())
    await store.delete(created["id"])
    assert await store.get(created["id"], now=NOW) is None


async def test_a_deleted_job_frees_its_idempotency_key(store: JobStore) -> None:
    refused, _ = await store.create(job(), idempotency_key="retry-me")
    await store.delete(refused["id"])  # what chat does when the runner refuses the job
    again, fresh = await store.create(job("another body", now=NOW + 1), idempotency_key="retry-me")
    assert fresh is True
    assert again["id"] != refused["id"]


async def test_a_job_keeps_its_owner(store: JobStore) -> None:
    created, _ = await store.create(job(owner="bob"))
    got = await store.get(created["id"], now=NOW)
    assert got is not None
    assert got["owner"] == "bob"


async def test_idempotency_keys_are_namespaced_per_owner(store: JobStore) -> None:
    alice, fresh_a = await store.create(job(owner="alice"), idempotency_key="essay-42")
    bob, fresh_b = await store.create(job(owner="bob"), idempotency_key="essay-42")
    assert (fresh_a, fresh_b) == (True, True)
    assert alice["id"] != bob["id"]
    assert bob["owner"] == "bob"
    # each owner replays their own; a different body is a conflict only within one owner
    replay, fresh = await store.create(job(owner="bob", now=NOW + 1), idempotency_key="essay-42")
    assert (replay["id"], fresh) == (bob["id"], False)
    _, fresh = await store.create(job("else", owner="carol"), idempotency_key="essay-42")
    assert fresh is True
    with pytest.raises(IdempotencyConflict):
        await store.create(job("else", owner="alice"), idempotency_key="essay-42")


async def test_list_jobs_is_per_owner_and_newest_first(store: JobStore) -> None:
    mine = [(await store.create(job(f"p{i}", now=NOW + i)))[0]["id"] for i in range(5)]
    await store.create(job("theirs", now=NOW + 2.5, owner="bob"))
    listed = await store.list_jobs("alice", limit=10, now=NOW + 10)
    assert [j["id"] for j in listed] == mine[::-1]
    assert {j["owner"] for j in listed} == {"alice"}
    assert [j["id"] for j in await store.list_jobs("bob", limit=10, now=NOW + 10)] != []
    assert await store.list_jobs("nobody", limit=10, now=NOW + 10) == []


async def test_list_jobs_pages_with_a_cursor(store: JobStore) -> None:
    mine = [(await store.create(job(f"p{i}", now=NOW + i)))[0]["id"] for i in range(7)][::-1]
    for i in range(3):  # another owner's jobs between mine change nothing
        await store.create(job(f"b{i}", now=NOW + i + 0.5, owner="bob"))
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = await store.list_jobs("alice", limit=3, after=after, now=NOW + 10)
        if not page:
            break
        pages.append([j["id"] for j in page])
        after = page[-1]["id"]
    assert pages == [mine[0:3], mine[3:6], mine[6:7]]


async def test_list_jobs_cursor_of_another_owner_gives_nothing(store: JobStore) -> None:
    await store.create(job("a"))
    bobs, _ = await store.create(job("b", owner="bob", now=NOW + 1))
    assert await store.list_jobs("alice", limit=10, after=bobs["id"], now=NOW + 2) == []
    assert await store.list_jobs("alice", limit=10, after="0" * 32, now=NOW + 2) == []


async def test_list_jobs_leaves_out_expired_and_settles_overdue(store: JobStore) -> None:
    old, _ = await store.create(job("old", now=NOW))
    recent, _ = await store.create(job("recent", now=NOW + 85_000))
    listed = await store.list_jobs("alice", limit=10, now=NOW + 86_401)
    assert [j["id"] for j in listed] == [recent["id"]]
    assert listed[0]["status"] == "expired"  # queued past its start deadline, as get() shows it
    assert old["id"] not in [j["id"] for j in listed]


async def test_an_owner_is_required() -> None:
    with pytest.raises(ValueError, match="owner"):
        job(owner="")
    with pytest.raises(ValueError, match="owner"):
        job(owner="#keys")  # reserved for key records in the DynamoDB index


async def test_a_failing_table_is_an_upstream_error_not_a_crash() -> None:
    import boto3
    from botocore.stub import Stubber
    from servicekit.errors import UpstreamError

    resource = boto3.resource(
        "dynamodb", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    table = resource.Table("jobs")
    with Stubber(table.meta.client) as stubber:
        stubber.add_client_error("get_item", service_error_code="ProvisionedThroughputExceededException")
        with pytest.raises(UpstreamError, match="ProvisionedThroughputExceededException"):
            await DynamoJobStore(table).get("0" * 32, now=NOW)

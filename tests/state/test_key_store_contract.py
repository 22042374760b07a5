"""One contract, two key stores: SqliteKeyStore and DynamoKeyStore (DynamoDB through moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servicekit.state.keys import ApiKey, KeyNameTaken, KeyStore, hash_key, looks_like_key, new_key

from tests.jobs.stores import KINDS, make_key_store

NOW = 1_800_000_000.0


@pytest.fixture(params=KINDS)
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    with make_key_store(request.param, tmp_path) as made:
        yield made


def record(name: str, *, now: float = NOW, key: str | None = None, **fields: object) -> ApiKey:
    made: ApiKey = {
        "name": name,
        "key_hash": hash_key(key or new_key()),
        "created_at": now,
        "revoked_at": None,
        "weight": 1,
        "max_waiting": None,
        "models": None,
    }
    made.update(fields)  # type: ignore[typeddict-item]
    return made


async def test_add_then_lookup_by_hash(keys: KeyStore) -> None:
    key = new_key()
    assert looks_like_key(key)
    stored = record("alice", key=key, weight=3, max_waiting=12, models=["tinyllama", "llama3.2"])
    await keys.add(stored)
    assert await keys.lookup(hash_key(key)) == stored
    assert await keys.lookup(hash_key(new_key())) is None


async def test_defaults_round_trip_as_none(keys: KeyStore) -> None:
    key = new_key()
    await keys.add(record("bob", key=key))
    found = await keys.lookup(hash_key(key))
    assert found is not None
    assert (found["revoked_at"], found["max_waiting"], found["models"], found["weight"]) == (None, None, None, 1)


async def test_a_name_is_taken_once(keys: KeyStore) -> None:
    await keys.add(record("alice"))
    with pytest.raises(KeyNameTaken):
        await keys.add(record("alice", now=NOW + 1))
    assert [k["name"] for k in await keys.list()] == ["alice"]


async def test_revoke(keys: KeyStore) -> None:
    key = new_key()
    await keys.add(record("alice", key=key))
    assert await keys.revoke("alice", now=NOW + 5) is True
    found = await keys.lookup(hash_key(key))
    assert found is not None
    assert found["revoked_at"] == NOW + 5  # revoked keys are still found: the caller then gets 401
    assert await keys.revoke("alice", now=NOW + 6) is False  # already revoked
    assert await keys.revoke("nobody", now=NOW + 6) is False
    with pytest.raises(KeyNameTaken):  # names are never reused, even once revoked
        await keys.add(record("alice", now=NOW + 7))


async def test_list_is_oldest_first(keys: KeyStore) -> None:
    for offset, name in [(2, "carol"), (0, "alice"), (1, "bob")]:
        await keys.add(record(name, now=NOW + offset))
    await keys.revoke("bob", now=NOW + 3)
    listed = await keys.list()
    assert [k["name"] for k in listed] == ["alice", "bob", "carol"]
    assert [k["revoked_at"] for k in listed] == [None, NOW + 3, None]


async def test_any_active(keys: KeyStore) -> None:
    assert await keys.any_active() is False
    await keys.add(record("alice"))
    assert await keys.any_active() is True
    await keys.add(record("bob", now=NOW + 1))
    await keys.revoke("alice", now=NOW + 2)
    assert await keys.any_active() is True
    await keys.revoke("bob", now=NOW + 3)
    assert await keys.any_active() is False


async def test_keys_and_jobs_share_the_table_without_mixing(tmp_path: Path) -> None:
    """DynamoDB: key records sit in the owner index under a reserved owner, never among a caller's jobs."""
    from servicekit.jobs.dynamo_store import DynamoJobStore
    from servicekit.jobs.model import new_job
    from servicekit.state.dynamo_keys import DynamoKeyStore

    from tests.jobs.stores import moto_table

    with moto_table() as table:
        keys, jobs = DynamoKeyStore(table), DynamoJobStore(table)
        await keys.add(record("alice"))
        created, _ = await jobs.create(
            new_job("tinyllama", {"prompt": "x"}, owner="alice", now=NOW, ttl_s=3600, start_deadline_s=900)
        )
        assert [j["id"] for j in await jobs.list_jobs("alice", limit=10, now=NOW)] == [created["id"]]
        assert [k["name"] for k in await keys.list()] == ["alice"]

"""The state database: private files, versioned schema, and another process's lock never wedges a caller."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servicekit.config import ConfigError
from servicekit.errors import StateBusy, StateError
from servicekit.jobs.model import Job, new_job
from servicekit.jobs.sqlite_store import SqliteJobStore
from servicekit.state import schema
from servicekit.state.factory import StateSettings, job_store, key_store, state_database
from servicekit.state.sqlite import BUSY_BUDGET_S, DB_NAME, StateDatabase

from tests.waiting import eventually


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[StateDatabase]:
    made = StateDatabase(tmp_path / "state")
    yield made
    made.close()


def a_job(prompt: str = "hi") -> Job:
    return new_job("tinyllama", {"prompt": prompt}, owner="alice", now=time.time(), ttl_s=60, start_deadline_s=30)


async def test_every_file_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files would be 0644 without care
    try:
        database = StateDatabase(tmp_path / "state")
        store = SqliteJobStore(database)
        await store.create(a_job())
    finally:
        os.umask(old)
    directory = tmp_path / "state"
    assert mode(directory) == 0o700
    names = sorted(p.name for p in directory.iterdir())
    assert names == [DB_NAME, f"{DB_NAME}-shm", f"{DB_NAME}-wal"]  # WAL mode, and nothing else
    assert {name: mode(directory / name) for name in names} == dict.fromkeys(names, 0o600)
    database.close()


def test_a_planted_database_link_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    (tmp_path / "theirs.db").write_bytes(b"")
    (directory / DB_NAME).symlink_to(tmp_path / "theirs.db")
    with pytest.raises(ConfigError, match="STATE_DIR file"):
        StateDatabase(directory)


def test_a_shared_state_dir_is_refused_when_the_store_is_built(tmp_path: Path) -> None:
    shared = tmp_path / "state"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    settings = StateSettings(directory=str(shared))  # reading the settings checks nothing ...
    with pytest.raises(ConfigError, match="STATE_DIR"):
        job_store(settings)  # ... building the store does (at app start)


TABLES = ["idempotency", "jobs", "keys", "queue_callers", "queue_clocks", "queue_models", "queue_tickets"]


async def test_the_schema_is_migrated_once_and_versioned(database: StateDatabase) -> None:
    def tables(db: sqlite3.Connection) -> tuple[int, list[str], str]:
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return schema.version(db), names, db.execute("PRAGMA journal_mode").fetchone()[0]

    assert await database.read(tables) == (schema.LATEST, TABLES, "wal")
    again = StateDatabase(database.directory)  # another process opening it: nothing to do
    assert await again.read(tables) == (schema.LATEST, TABLES, "wal")
    again.close()


async def test_a_database_from_newer_code_is_refused(tmp_path: Path) -> None:
    database = StateDatabase(tmp_path / "state")
    await database.read(schema.version)
    with sqlite3.connect(database.path) as raw:
        raw.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    raw.close()
    newer = StateDatabase(tmp_path / "state")
    with pytest.raises(StateError, match="newer than this code"):
        await newer.read(schema.version)
    database.close()


async def test_sqlite_errors_become_state_errors(database: StateDatabase) -> None:
    with pytest.raises(StateError, match="no such table") as raised:
        await database.read(lambda db: db.execute("SELECT * FROM nowhere").fetchall())
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)


def test_one_database_per_directory_per_process(tmp_path: Path) -> None:
    settings = StateSettings(directory=str(tmp_path / "state"))
    jobs, keys = job_store(settings), key_store(settings)
    assert jobs.database is keys.database is state_database(str(tmp_path / "state"))  # type: ignore[attr-defined]


class ExclusiveHolder:
    """Another process's connection, holding the write lock until released."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.connection.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


async def tick(gaps: list[float]) -> None:
    """Every 10 ms, note how long the loop really took to come back: a loop held up shows a long gap.
    Its sleep is the measurement, not a wait for anything."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


async def test_a_locked_database_fails_fast_off_the_loop(database: StateDatabase) -> None:
    store = SqliteJobStore(database)
    await store.list_jobs("alice", limit=1, now=time.time())  # created and migrated
    holder = ExclusiveHolder(database.path)
    try:
        started = time.monotonic()
        with pytest.raises(StateBusy) as raised:
            await store.create(a_job())
        waited = time.monotonic() - started
        assert raised.value.status == 503
        assert raised.value.headers() == {"Retry-After": "1"}
        assert BUSY_BUDGET_S * 0.9 <= waited < BUSY_BUDGET_S * 3
        # Readers are not blocked by a writer in WAL mode.
        assert await store.list_jobs("alice", limit=1, now=time.time()) == []
    finally:
        holder.release()


async def test_waiting_for_the_lock_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """Each attempt waits a whole second inside SQLite here: on the loop, that would stop a 10 ms
    ticker for a second at a time; in a worker thread the ticker never notices."""
    database = StateDatabase(tmp_path / "state", busy_timeout_s=1.0, busy_budget_s=2.0)
    store = SqliteJobStore(database)
    await store.list_jobs("alice", limit=1, now=time.time())
    gaps: list[float] = []
    holder = ExclusiveHolder(database.path)
    ticker = asyncio.create_task(tick(gaps))
    try:
        with pytest.raises(StateBusy):
            await store.create(a_job())
    finally:
        ticker.cancel()
        holder.release()
        database.close()
    assert sum(gaps) >= 2.0  # the ticker ran through at least two one-second attempts ...
    assert max(gaps) < 0.75, sorted(gaps)[-5:]  # ... and was never held up for one


async def test_a_lock_released_in_time_lets_the_call_through(database: StateDatabase) -> None:
    store = SqliteJobStore(database)
    await store.list_jobs("alice", limit=1, now=time.time())
    holder = ExclusiveHolder(database.path)
    asyncio.get_running_loop().call_later(0.3, holder.release)
    created, fresh = await store.create(a_job())
    assert fresh is True
    assert (await store.get(created["id"], now=time.time())) is not None


async def test_expired_rows_are_swept_in_bounded_batches(database: StateDatabase) -> None:
    from servicekit.jobs.sqlite_store import SWEEP_BATCH

    now = time.time()
    old = [
        new_job("m", {"prompt": f"p{i}"}, owner="alice", now=now - 100, ttl_s=10, start_deadline_s=5)
        for i in range(SWEEP_BATCH + 500)
    ]

    def fill(db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT INTO jobs (id, owner, status, created_at, expires_at, document) VALUES (?, ?, ?, ?, ?, '{}')",
            [(j["id"], j["owner"], j["status"], j["created_at"], j["expires_at"]) for j in old],
        )

    def count(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])

    await database.write(fill)
    store = SqliteJobStore(database)
    await store.create(a_job())  # the first create of a process sweeps: one batch
    assert await database.read(count) == 500 + 1
    await store.create(a_job())  # the batch was full: the next create sweeps the rest at once
    assert await database.read(count) == 2
    await store.create(a_job())  # nothing left to sweep for a minute
    assert await database.read(count) == 3


async def test_an_urgent_write_goes_before_a_burst_of_writes(database: StateDatabase) -> None:
    """The slot's handoff (claim, finish) is urgent: fifty writes already waiting do not delay it."""
    await database.write(lambda db: db.execute("CREATE TABLE marks (who TEXT)"))
    done: list[str] = []
    asked = 0

    async def write(who: str, urgent: bool = False) -> None:
        nonlocal asked

        def operation(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO marks VALUES (?)", (who,))
            time.sleep(0.001)  # a write that takes a little while, as a queue write does

        asked += 1  # from here to its place in line for a worker thread, a write never yields
        await database.write(operation, urgent=urgent)
        done.append(who)

    burst = [asyncio.create_task(write(f"w{index}")) for index in range(50)]
    await eventually(lambda: asked == 50, what="every ordinary write asking for its turn")
    already_done = len(done)  # written while the test waited for them all to ask
    await write("urgent", urgent=True)
    await asyncio.gather(*burst)
    # Beyond those, at most the write in progress and one that reached the gate first go before it.
    assert done.index("urgent") <= already_done + 2, done[:10]
    assert already_done < 40  # most of the burst was still waiting when it came
    assert sorted(done) == sorted([*(f"w{index}" for index in range(50)), "urgent"])


async def test_an_urgent_write_waits_for_another_process_off_the_loop(tmp_path: Path) -> None:
    """Tried on the loop first, an urgent write that finds the lock taken never waits there: it goes
    to its thread (a 10 ms ticker is never held up) and goes through once the lock is let go."""
    database = StateDatabase(tmp_path / "state", busy_timeout_s=1.0, busy_budget_s=5.0)
    await database.write(lambda db: db.execute("CREATE TABLE marks (who TEXT)"), urgent=True)
    gaps: list[float] = []
    holder = ExclusiveHolder(database.path)
    ticker = asyncio.create_task(tick(gaps))
    asyncio.get_running_loop().call_later(0.5, holder.release)
    try:
        await database.write(lambda db: db.execute("INSERT INTO marks VALUES ('urgent')"), urgent=True)
    finally:
        ticker.cancel()
    marks = await database.read(lambda db: db.execute("SELECT who FROM marks").fetchall())
    database.close()
    assert marks == [("urgent",)]
    assert sum(gaps) >= 0.4  # it waited for the other process ...
    assert max(gaps) < 0.25, sorted(gaps)[-5:]  # ... and never on the loop (busy_timeout is 1 s)


async def test_an_urgent_write_that_fails_is_a_state_error_and_the_next_one_works(database: StateDatabase) -> None:
    """On the loop's own connection too: the failure is ours (StateError), and the connection is opened
    afresh for the next urgent write."""
    await database.write(lambda db: db.execute("CREATE TABLE marks (who TEXT)"), urgent=True)
    with pytest.raises(StateError):
        await database.write(lambda db: db.execute("INSERT INTO no_such_table VALUES (1)"), urgent=True)
    await database.write(lambda db: db.execute("INSERT INTO marks VALUES ('after')"), urgent=True)
    assert await database.read(lambda db: db.execute("SELECT who FROM marks").fetchall()) == [("after",)]

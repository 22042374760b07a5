"""Build the configured stores: the SQLite database in STATE_DIR, or DynamoDB (JOBS_TABLE, on AWS).

Every store built in one process for the same STATE_DIR shares one :class:`StateDatabase`
(one pool of connections); DynamoDB stores connect lazily, on first use.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servicekit.config import env_str
from servicekit.state.statedir import default_state_dir

if TYPE_CHECKING:
    from servicekit.jobs.store import JobStore
    from servicekit.queue.drain_lease import DrainLease
    from servicekit.queue.model import QueueLimits
    from servicekit.queue.store import QueueStore
    from servicekit.state.keys import KeyStore
    from servicekit.state.sqlite import StateDatabase


def _default_directory() -> str:
    return default_state_dir(os.environ)


@dataclass(frozen=True, slots=True)
class StateSettings:
    table: str = ""  # JOBS_TABLE: the DynamoDB table (AWS); empty = SQLite in ``directory``
    directory: str = field(default_factory=_default_directory)  # STATE_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StateSettings:
        # Only read here: STATE_DIR is created and checked when a store is built (at app start).
        return cls(table=env_str(env, "JOBS_TABLE", ""), directory=env_str(env, "STATE_DIR", default_state_dir(env)))


_databases: weakref.WeakValueDictionary[Path, StateDatabase] = weakref.WeakValueDictionary()
_databases_guard = threading.Lock()


def state_database(directory: str) -> StateDatabase:
    """This process's one database manager for ``directory`` (checked and created on first use)."""
    from servicekit.state.sqlite import StateDatabase

    path = Path(directory).absolute()
    with _databases_guard:
        database = _databases.get(path)
        if database is None:
            database = StateDatabase(path)
            _databases[path] = database
        return database


def _dynamodb_table(name: str) -> Callable[[], Any]:
    def connect() -> Any:
        import boto3  # only on AWS, and only once the table is touched
        from botocore.config import Config

        config = Config(retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)
        return boto3.resource("dynamodb", config=config).Table(name)

    return connect


def job_store(state: StateSettings) -> JobStore:
    if state.table:
        from servicekit.jobs.dynamo_store import DynamoJobStore

        return DynamoJobStore(connect=_dynamodb_table(state.table))
    from servicekit.jobs.sqlite_store import SqliteJobStore

    return SqliteJobStore(state_database(state.directory))


def key_store(state: StateSettings) -> KeyStore:
    if state.table:
        from servicekit.state.dynamo_keys import DynamoKeyStore

        return DynamoKeyStore(connect=_dynamodb_table(state.table))
    from servicekit.state.sqlite_keys import SqliteKeyStore

    return SqliteKeyStore(state_database(state.directory))


def queue_store(state: StateSettings, limits: QueueLimits) -> QueueStore:
    """The deployment's one queue: in the state database, or in the DynamoDB table on AWS."""
    if state.table:
        from servicekit.queue.dynamo_store import DynamoQueueStore

        return DynamoQueueStore(connect=_dynamodb_table(state.table), limits=limits)
    from servicekit.queue.sqlite_store import SqliteQueueStore

    return SqliteQueueStore(state_database(state.directory), limits)


def drain_lease(state: StateSettings) -> DrainLease | None:
    """On AWS, the item that says a runner invocation is draining jobs; None elsewhere (no drains)."""
    if not state.table:
        return None
    from servicekit.queue.drain_lease import DrainLease

    return DrainLease(connect=_dynamodb_table(state.table))

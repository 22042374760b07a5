"""The stores, ready for tests: SQLite in a temporary STATE_DIR, DynamoDB in moto."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import boto3
from moto import mock_aws
from servicekit.jobs.dynamo_store import DynamoJobStore
from servicekit.jobs.sqlite_store import SqliteJobStore
from servicekit.jobs.store import JobStore
from servicekit.state.dynamo import OWNER_INDEX
from servicekit.state.dynamo_keys import DynamoKeyStore
from servicekit.state.keys import KeyStore
from servicekit.state.sqlite import StateDatabase
from servicekit.state.sqlite_keys import SqliteKeyStore

REGION = "us-east-1"
TABLE = "jobs"
KINDS = ["sqlite", "dynamodb"]
T = TypeVar("T")


def create_jobs_table(resource: Any) -> Any:
    """The JobsTable of template.yaml: key ``id``, the ``by_owner`` index, TTL on ``expires_at``."""
    table = resource.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "owner", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": OWNER_INDEX,
                "KeySchema": [
                    {"AttributeName": "owner", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    resource.meta.client.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    return table


@contextmanager
def moto_table() -> Iterator[Any]:
    with mock_aws():
        resource = boto3.resource(
            "dynamodb", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        yield create_jobs_table(resource)


@contextmanager
def _store(
    kind: str, tmp_path: Path, sqlite: Callable[[StateDatabase], T], dynamodb: Callable[[Any], T]
) -> Iterator[T]:
    """The store of ``kind`` built by ``sqlite`` (over a StateDatabase) or ``dynamodb`` (over the moto table)."""
    if kind == "sqlite":
        database = StateDatabase(tmp_path / "state")
        try:
            yield sqlite(database)
        finally:
            database.close()
        return
    with moto_table() as table:
        yield dynamodb(table)


def make_store(kind: str, tmp_path: Path) -> AbstractContextManager[JobStore]:
    return _store(kind, tmp_path, SqliteJobStore, DynamoJobStore)


def make_key_store(kind: str, tmp_path: Path) -> AbstractContextManager[KeyStore]:
    return _store(kind, tmp_path, SqliteKeyStore, DynamoKeyStore)

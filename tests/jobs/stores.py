"""Both job stores, ready for tests: files in a temporary directory, DynamoDB in moto."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws
from servicekit.jobs.dynamo_store import DynamoJobStore
from servicekit.jobs.file_store import FileJobStore
from servicekit.jobs.store import JobStore

REGION = "us-east-1"
TABLE = "jobs"


def create_jobs_table(resource: Any) -> Any:
    table = resource.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    resource.meta.client.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    return table


@contextmanager
def make_store(kind: str, tmp_path: Path) -> Iterator[JobStore]:
    if kind == "file":
        yield FileJobStore(tmp_path / "jobs")
        return
    with mock_aws():
        resource = boto3.resource(
            "dynamodb", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        yield DynamoJobStore(create_jobs_table(resource))

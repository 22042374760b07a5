"""Build the configured job store: files (JOBS_DIR) or DynamoDB (JOBS_TABLE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servicekit.jobs.file_store import FileJobStore
from servicekit.jobs.store import JobStore

DEFAULT_JOBS_DIR = "/tmp/ollama-jobs"


@dataclass(frozen=True, slots=True)
class JobStoreSettings:
    table: str = ""  # JOBS_TABLE: a DynamoDB table name (AWS); empty = files in JOBS_DIR
    directory: str = DEFAULT_JOBS_DIR


def job_store(settings: JobStoreSettings) -> JobStore:
    if settings.table:
        from servicekit.jobs.dynamo_store import DynamoJobStore

        def connect() -> Any:
            import boto3  # only on AWS, and only once a job is touched
            from botocore.config import Config

            config = Config(retries={"total_max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)
            return boto3.resource("dynamodb", config=config).Table(settings.table)

        return DynamoJobStore(connect=connect)
    return FileJobStore(settings.directory)

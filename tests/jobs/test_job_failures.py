"""runner.job_failures: Lambda's on-failure destination records settle the job (DynamoDB in moto)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from runner import job_failures
from servicekit.jobs.dynamo_store import DynamoJobStore
from servicekit.jobs.model import new_job

from local.lambda_context import LambdaContext
from tests.jobs.stores import REGION, TABLE, moto_table


def destination_record(job_id: str, condition: str, function_error: bool = False) -> dict[str, Any]:
    """What Lambda sends an on-failure destination for an asynchronous invocation."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": "2026-11-27T08:00:00.000Z",
        "requestContext": {
            "requestId": "c2a6f2c1-8d7e-4d43-9c5e-2b3c4d5e6f70",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:stack-RunnerFunction-XYZ:$LATEST",
            "condition": condition,
            "approximateInvokeCount": 1 if condition == "RetriesExhausted" else 0,
        },
        "requestPayload": {
            "version": "2.0",
            "rawPath": f"/v1/jobs/{job_id}/run",
            "routeKey": f"POST /v1/jobs/{job_id}/run",
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
    }
    if function_error:
        record["responseContext"]["functionError"] = "Unhandled"
        record["responsePayload"] = {
            "errorMessage": "Task timed out after 900.00 seconds",
            "errorType": "Sandbox.Timedout",
        }
    return record


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoJobStore]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("JOBS_TABLE", TABLE)
    with moto_table() as table:
        yield DynamoJobStore(table)


async def invoke(record: dict[str, Any]) -> dict[str, Any]:
    """The handler as Lambda calls it: synchronously, in a thread of its own."""
    return await asyncio.to_thread(job_failures.handler, record, LambdaContext("job-failures"))


async def _queued(store: DynamoJobStore, age_s: float = 0.0) -> str:
    created = time.time() - age_s
    job, _ = await store.create(
        new_job("tinyllama", {"prompt": "x"}, owner="alice", now=created, ttl_s=3600, start_deadline_s=900)
    )
    return job["id"]


async def test_an_event_too_old_to_run_expires_the_job_past_its_start_deadline(store: DynamoJobStore) -> None:
    job_id = await _queued(store, age_s=901)
    result = await invoke(destination_record(job_id, "EventAgeExceeded"))
    assert result == {"settled": True, "job_id": job_id, "status": "expired"}
    job = await store.get(job_id, now=time.time())
    assert job is not None
    assert job["status"] == "expired"


async def test_a_job_another_kicks_drain_is_running_is_left_alone_when_its_kick_aged_out(
    store: DynamoJobStore,
) -> None:
    job_id = await _queued(store, age_s=100)
    await store.start(job_id, now=time.time(), lease_s=30)
    result = await invoke(destination_record(job_id, "EventAgeExceeded"))
    assert result == {"settled": False, "job_id": job_id, "status": "running"}


async def test_a_crashed_run_fails_the_job(store: DynamoJobStore) -> None:
    job_id = await _queued(store)
    await store.start(job_id, now=time.time(), lease_s=30)
    record = destination_record(job_id, "RetriesExhausted", function_error=True)
    assert (await invoke(record))["status"] == "failed"
    job = await store.get(job_id, now=time.time())
    assert job is not None
    assert job["status"] == "failed"
    assert job["error"] == {"code": "runner_failed", "message": "The runner failed to run the job (Sandbox.Timedout)."}


async def test_a_finished_job_is_left_alone(store: DynamoJobStore) -> None:
    job_id = await _queued(store)
    await store.start(job_id, now=time.time(), lease_s=30)
    await store.finish(job_id, "succeeded", now=time.time(), fields={"response": "ok"})
    result = await invoke(destination_record(job_id, "RetriesExhausted"))
    assert result["settled"] is False
    job = await store.get(job_id, now=time.time())
    assert job is not None
    assert job["status"] == "succeeded"


def test_records_that_are_not_job_runs_are_ignored() -> None:
    assert job_failures.job_id_of({"requestPayload": {"rawPath": "/chat"}}) is None

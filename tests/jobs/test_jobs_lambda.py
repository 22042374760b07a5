"""Jobs on the AWS path, in-process: chat invokes the real runner handler asynchronously (InvocationType=Event)
through a stand-in Lambda container, with the jobs in DynamoDB (moto)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.lambda_transport import LambdaInvokeTransport
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from servicekit.jobs.dynamo_store import DynamoJobStore
from servicekit.lambda_adapter import lambda_handler

from tests.fake_ollama import FakeOllama
from tests.jobs.helpers import status_is, wait_for
from tests.jobs.stores import moto_table
from tests.lambda_standin import InProcessLambda
from tests.servers import serve_in_thread

RUNNER = "stack-RunnerFunction-XYZ"


@pytest.fixture
def table() -> Iterator[Any]:
    with moto_table() as made:
        yield made


@pytest.fixture
def runner_lambda(fake: FakeOllama, runner_settings: RunnerSettings, table: Any) -> Iterator[InProcessLambda]:
    with serve_in_thread(fake.app) as ollama_url:
        settings = RunnerSettings(
            ollama_url=ollama_url, lock_path=runner_settings.lock_path, job_progress_interval_s=0.05, job_lease_s=2
        )
        app = create_runner_app(settings, job_store=DynamoJobStore(table))
        standin = InProcessLambda(lambda_handler(app))
        yield standin
        standin.close()


@pytest.fixture
async def chat(runner_lambda: InProcessLambda, table: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = ChatSettings(runner_function=RUNNER, auth="off")
    transport = LambdaInvokeTransport(runner_lambda, RUNNER, default_deadline_s=settings.chat_deadline_s)
    app = create_chat_app(settings, runner_transport=transport, job_store=DynamoJobStore(table))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://chat.test") as client:
        yield client


async def test_job_runs_through_an_asynchronous_invoke(
    chat: httpx.AsyncClient, runner_lambda: InProcessLambda, fake: FakeOllama
) -> None:
    created = await chat.post("/v1/jobs", json={"prompt": "from the async queue"})
    assert created.status_code == 202
    job_id = created.json()["id"]
    job = await wait_for(chat, job_id, status_is("succeeded"))
    assert job["response"] == "from the async "
    (event,) = runner_lambda.invocations
    assert event["rawPath"] == f"/v1/jobs/{job_id}/run"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert fake.recorder.prompts == ["from the async queue"]


async def test_a_redelivered_event_runs_the_job_once(
    chat: httpx.AsyncClient, runner_lambda: InProcessLambda, fake: FakeOllama
) -> None:
    job_id = (await chat.post("/v1/jobs", json={"prompt": "deliver me twice"})).json()["id"]
    await wait_for(chat, job_id, status_is("succeeded"))
    payload = json.dumps(runner_lambda.invocations[0]).encode()
    result = await asyncio.to_thread(
        runner_lambda.invoke, FunctionName=RUNNER, InvocationType="RequestResponse", Payload=payload
    )
    reply = json.loads(result["Payload"].read())
    assert json.loads(reply["body"]) == {"id": job_id, "status": "succeeded"}
    assert fake.recorder.prompts == ["deliver me twice"]


async def test_queued_events_run_one_at_a_time(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.01
    ids = [(await chat.post("/v1/jobs", json={"prompt": f"job {i}"})).json()["id"] for i in range(4)]
    for job_id in ids:
        await wait_for(chat, job_id, status_is("succeeded"))
    assert fake.recorder.peak == 1
    assert sorted(fake.recorder.prompts) == [f"job {i}" for i in range(4)]


async def test_cancel_before_the_event_runs(
    chat: httpx.AsyncClient, runner_lambda: InProcessLambda, fake: FakeOllama
) -> None:
    fake.faults.token_delay_s = 0.1
    first = (await chat.post("/v1/jobs", json={"prompt": "occupy the container"})).json()["id"]
    second = (await chat.post("/v1/jobs", json={"prompt": "cancel me"})).json()["id"]
    assert (await chat.delete(f"/v1/jobs/{second}")).json()["status"] == "cancelled"
    await wait_for(chat, first, status_is("succeeded"))
    await asyncio.to_thread(runner_lambda.drain)  # whatever Lambda still held has run
    assert "cancel me" not in fake.recorder.prompts
    assert (await chat.get(f"/v1/jobs/{second}")).json()["status"] == "cancelled"


async def test_a_job_longer_than_the_invocation_fails_cleanly_before_lambda_kills_it(
    fake: FakeOllama, runner_settings: RunnerSettings, table: Any
) -> None:
    """A runner function with 2 s left (1 s after the margin) and a 4 s generation: the job fails
    with deadline_exceeded and keeps its partial response, rather than dying with the container
    and failing only when its lease lapses (runner_lost)."""
    fake.faults.token_delay_s = 0.1
    fake.faults.tokens = 40
    with serve_in_thread(fake.app) as ollama_url:
        settings = RunnerSettings(ollama_url=ollama_url, lock_path=runner_settings.lock_path)
        standin = InProcessLambda(
            lambda_handler(create_runner_app(settings, job_store=DynamoJobStore(table))), timeout_s=2.0
        )
        try:
            chat_settings = ChatSettings(runner_function=RUNNER, auth="off")
            transport = LambdaInvokeTransport(standin, RUNNER, default_deadline_s=chat_settings.chat_deadline_s)
            app = create_chat_app(chat_settings, runner_transport=transport, job_store=DynamoJobStore(table))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://chat.test") as chat:
                job_id = (await chat.post("/v1/jobs", json={"prompt": "a long job"})).json()["id"]
                job = await wait_for(chat, job_id, status_is("failed"), timeout_s=5)
        finally:
            standin.close()
    assert job["error"]["code"] == "deadline_exceeded"
    assert job["response"].startswith("a long job ")  # what was generated before the limit is kept
    assert fake.recorder.abandoned == 1  # Ollama's request was closed

"""Under the Lambda stand-in, both handlers write CloudWatch EMF documents and JSON request lines to stdout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chat.app import create_app as create_chat_app
from chat.lambda_transport import LambdaInvokeTransport
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.hostlock import FileHostLock
from runner.settings import Settings as RunnerSettings
from runner.slot import GenerationSlot
from servicekit.callers import Caller
from servicekit.jobs.dynamo_store import DynamoJobStore
from servicekit.lambda_adapter import lambda_handler
from servicekit.observe.emf import EmfSlotMetrics
from servicekit.observe.settings import ObserveSettings
from servicekit.queue.model import QueueLimits
from servicekit.queue.sqlite_store import SqliteQueueStore
from servicekit.state.factory import StateSettings
from servicekit.state.sqlite import StateDatabase

from local.events import api_gateway_event
from tests.auth.helpers import add_key
from tests.fake_ollama import FakeOllama
from tests.jobs.stores import moto_table
from tests.lambda_standin import InProcessLambda
from tests.servers import serve_in_thread
from tests.waiting import eventually, until

RUNNER = "stack-RunnerFunction-XYZ"
EMF = ObserveSettings(log_format="json", metrics="emf")


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]
    for document in documents:  # the shape CloudWatch requires of every EMF document
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert isinstance(document["_aws"]["Timestamp"], int)
        assert directive["Namespace"] == "ServerlessOllamaChat"
        for metric in directive["Metrics"]:
            assert metric["Name"] in document
        for dimension_set in directive["Dimensions"]:
            assert all(isinstance(document[name], str) for name in dimension_set)
    return documents


def metric(documents: list[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    values: list[float] = []
    for document in documents:
        if name in document and all(document.get(k) == v for k, v in dimensions.items()):
            found = document[name]
            values.extend(found if isinstance(found, list) else [found])
    return values


@pytest.fixture
def table() -> Iterator[Any]:
    with moto_table() as made:
        yield made


def test_a_mix_of_requests_gives_emf_documents(
    fake: FakeOllama,
    runner_settings: RunnerSettings,
    state_settings: StateSettings,
    table: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = add_key(state_settings, "alice")
    with serve_in_thread(fake.app) as ollama_url:
        settings = RunnerSettings(ollama_url=ollama_url, lock_path=runner_settings.lock_path)
        runner = InProcessLambda(
            lambda_handler(create_runner_app(settings, job_store=DynamoJobStore(table), observe=EMF))
        )
        chat_settings = ChatSettings(runner_function=RUNNER, auth="required", state=state_settings)
        transport = LambdaInvokeTransport(runner, RUNNER, default_deadline_s=chat_settings.chat_deadline_s)
        chat_app = create_chat_app(
            chat_settings, runner_transport=transport, job_store=DynamoJobStore(table), observe=EMF
        )
        chat = InProcessLambda(lambda_handler(chat_app), function_name="stack-ChatFunction-ABC", timeout_s=29)
        keyed = {"authorization": f"Bearer {key}"}

        def ask(
            method: str, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
        ) -> dict[str, Any]:
            event = api_gateway_event(method, path, json.dumps(body) if body is not None else None, headers)
            reply = chat.invoke(
                FunctionName="chat", InvocationType="RequestResponse", Payload=json.dumps(event).encode()
            )
            result: dict[str, Any] = json.loads(reply["Payload"].read())
            return result

        try:
            capsys.readouterr()
            assert ask("POST", "/chat", {"prompt": "one two"}, keyed)["statusCode"] == 200
            assert ask("POST", "/chat", {"prompt": "s t", "stream": True}, keyed)["statusCode"] == 200
            assert ask("POST", "/chat", {"prompt": "no key"})["statusCode"] == 401
            assert ask("POST", "/chat", {"prompt": "x", "model": "gpt-9"}, keyed)["statusCode"] == 404
            assert ask("GET", "/readyz")["statusCode"] == 503  # on AWS: the runner's own readiness is not wired here
            job = ask("POST", "/v1/jobs", {"prompt": "a job"}, keyed)
            assert job["statusCode"] == 202
            job_id = json.loads(job["body"])["id"]
            until(lambda: json.loads(ask("GET", f"/v1/jobs/{job_id}", None, keyed)["body"])["status"] == "succeeded")
        finally:
            chat.close()
            runner.close()
    out = capsys.readouterr().out
    documents = emf_documents(out)
    assert sum(metric(documents, "Requests", service="chat", route="/chat", status="200")) == 2
    assert sum(metric(documents, "Requests", service="chat", route="/chat", status="401", code="unauthorized")) == 1
    assert sum(metric(documents, "Requests", service="chat", route="/chat", status="404", code="model_not_found")) == 1
    assert sum(metric(documents, "Requests", service="chat", route="/v1/jobs", status="202")) == 1
    assert sum(metric(documents, "Requests", service="runner", route="/v1/run/{model:path}", status="200")) == 2
    assert sum(metric(documents, "Requests", service="runner", route="/v1/jobs/{job_id}/run", status="200")) == 1
    # The job's run, reported on its own: two /chat generations and the job's.
    assert sum(metric(documents, "Requests", service="runner", route="job", status="200")) == 1
    assert len(metric(documents, "GenerationTime", service="runner", model="tinyllama")) == 3
    assert len(metric(documents, "TimeToFirstToken", service="runner", model="tinyllama")) == 3
    assert sum(metric(documents, "TokensOut", model="tinyllama", caller="alice")) == 3 * fake.faults.tokens
    assert sum(metric(documents, "Requests", service="chat", route="/readyz", status="503", code="not_ready")) == 1
    # Each grant's wait, by class (the job is a batch ticket).
    assert len(metric(documents, "QueueWait", service="runner", **{"class": "interactive"})) == 2
    assert len(metric(documents, "QueueWait", service="runner", **{"class": "batch"})) == 1
    # Powertools' Logger: a JSON request line per request, never the prompt.
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"message":"request"' in line]
    assert {line["service"] for line in lines} == {"chat", "runner"}
    assert all(isinstance(line["request_id"], str) and line["status"] for line in lines)
    assert "one two" not in out


async def test_the_slot_reports_the_queue_it_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While tickets wait, the slot's dispatcher reads the queue and the runner writes its depth by
    class and its oldest ticket's age (at most every ``report_every_s``)."""
    limits = QueueLimits(max_queue=10, max_waiting_per_caller=10, batch_max_wait_s=120, lease_s=5)
    store = SqliteQueueStore(StateDatabase(tmp_path / "state"), limits)
    slot = GenerationSlot(
        FileHostLock(str(tmp_path / "lock")),
        store,
        poll_interval_s=0.001,
        observer=EmfSlotMetrics("runner", report_every_s=0.05),
    )
    capsys.readouterr()
    async with slot.place(Caller("alice"), "interactive", "m") as running:
        grant = await slot.wait(running, 5)
        await slot.enqueue_job("j1", Caller("bob"), "m")  # no runner takes it while the slot is held
        async with slot.place(Caller("carol"), "interactive", "m"):
            reported: list[dict[str, Any]] = []

            def aged() -> bool:
                reported.extend(emf_documents(capsys.readouterr().out))
                return any(age > 0.1 for age in metric(reported, "OldestTicketAgeSeconds", service="runner"))

            await eventually(aged, timeout_s=5, what="an oldest-ticket age over 0.1 s")
        grant.ended_cleanly = True
    await slot.aclose()
    reported.extend(emf_documents(capsys.readouterr().out))
    assert set(metric(reported, "QueueDepth", service="runner", **{"class": "interactive"})) <= {0.0, 1.0}
    assert 1.0 in metric(reported, "QueueDepth", service="runner", **{"class": "interactive"})
    assert 1.0 in metric(reported, "QueueDepth", service="runner", **{"class": "batch"})
    ages = metric(reported, "OldestTicketAgeSeconds", service="runner")
    assert ages == sorted(ages)  # the job waited all along: its age only grows
    assert len(ages) < 5 / 0.05  # a sample per report_every_s, not one per read (4 a second and more)
    assert metric(reported, "QueueWait", service="runner", **{"class": "interactive"})[0] == 0.0  # alice: at once

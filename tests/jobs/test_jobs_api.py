"""The jobs API in local mode: chat -> runner (in-process) -> fake Ollama (loopback), one shared jobs dir."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from starlette.applications import Starlette

from tests.fake_ollama import FakeOllama
from tests.jobs.helpers import status_is, wait_for
from tests.servers import free_port, serve_in_thread
from tests.waiting import eventually, until_waiting


@pytest.fixture
def ollama_url(fake: FakeOllama) -> Iterator[str]:
    # A real server: httpx.ASGITransport buffers whole responses, and jobs are about streaming.
    with serve_in_thread(fake.app) as url:
        yield url


@pytest.fixture
def runner_settings_fast(runner_settings: RunnerSettings, ollama_url: str) -> RunnerSettings:
    return dataclasses.replace(runner_settings, ollama_url=ollama_url, job_progress_interval_s=0.05, job_lease_s=2.0)


@pytest.fixture
def runner_app_fast(runner_settings_fast: RunnerSettings) -> Starlette:
    return create_runner_app(runner_settings_fast)


@pytest.fixture
async def chat(
    runner_app_fast: Starlette, make_chat: Callable[..., httpx.AsyncClient]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_chat(runner_app_fast) as client:
        yield client


async def test_job_lifecycle(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    created = await chat.post("/v1/jobs", json={"prompt": "tell me about jobs"})
    assert created.status_code == 202
    body = created.json()
    assert set(body) == {"id", "status", "created_at"}
    assert body["status"] == "queued"
    assert created.headers["location"] == f"/v1/jobs/{body['id']}"
    job = await wait_for(chat, body["id"], status_is("succeeded"))
    assert job["response"] == "tell me about "
    assert job["usage"] == {"prompt_tokens": 7, "completion_tokens": 3}
    assert set(job["timings"]) >= {"queue_ms", "total_ms", "load_ms", "tokens_per_s"}
    assert job["error"] is None
    assert job["queue_position"] is None
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert fake.recorder.bodies[0]["path"] == "/api/generate"
    assert fake.recorder.bodies[0]["stream"] is True


async def test_partial_output_is_visible_while_running(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.1
    fake.faults.tokens = 10
    job_id = (await chat.post("/v1/jobs", json={"prompt": "one two three four five"})).json()["id"]
    partial = await wait_for(chat, job_id, lambda j: j["status"] == "running" and j["response"] != "")
    final = await wait_for(chat, job_id, status_is("succeeded"))
    assert final["response"].startswith(partial["response"])
    assert len(partial["response"]) < len(final["response"])


async def test_cancel_while_queued_never_reaches_ollama(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.1
    holder = asyncio.create_task(chat.post("/chat", json={"prompt": "hold the slot"}))
    await eventually(lambda: fake.recorder.active == 1)
    job_id = (await chat.post("/v1/jobs", json={"prompt": "never run me"})).json()["id"]
    queued = (await chat.get(f"/v1/jobs/{job_id}")).json()
    assert queued["status"] == "queued"
    assert queued["queue_position"] == 1
    cancelled = await chat.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await holder).status_code == 200
    # A job created after it runs after it (first in, first out for a caller): had the cancelled
    # job stayed in the queue, it would have reached Ollama first.
    after = (await chat.post("/v1/jobs", json={"prompt": "after"})).json()["id"]
    await wait_for(chat, after, status_is("succeeded"))
    assert fake.recorder.prompts == ["hold the slot", "after"]
    assert (await chat.get(f"/v1/jobs/{job_id}")).json()["status"] == "cancelled"


async def test_cancel_while_running_closes_the_ollama_request(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.05
    fake.faults.tokens = 200
    job_id = (await chat.post("/v1/jobs", json={"prompt": "a long one"})).json()["id"]
    await wait_for(chat, job_id, lambda j: j["status"] == "running" and j["response"] != "")
    response = await chat.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    await eventually(lambda: fake.recorder.abandoned > 0, timeout_s=1)
    assert fake.recorder.abandoned == 1
    assert fake.recorder.completed == 0
    # the slot is free again
    fake.faults.tokens = 2
    assert (await chat.post("/chat", json={"prompt": "next"})).status_code == 200


async def test_finished_and_unknown_jobs(chat: httpx.AsyncClient) -> None:
    job_id = (await chat.post("/v1/jobs", json={"prompt": "quick"})).json()["id"]
    await wait_for(chat, job_id, status_is("succeeded"))
    again = await chat.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "job_finished"
    for method in ("GET", "DELETE"):
        missing = await chat.request(method, "/v1/jobs/0123456789abcdef0123456789abcdef")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "job_not_found"


async def test_a_job_not_started_before_its_deadline_expires_and_never_runs(
    runner_app_fast: Starlette, make_chat: Callable[..., httpx.AsyncClient], fake: FakeOllama
) -> None:
    fake.faults.token_delay_s = 0.3
    async with make_chat(runner_app_fast, job_start_deadline_s=0.3) as chat:
        holder = asyncio.create_task(chat.post("/chat", json={"prompt": "hold it for a second"}))
        await eventually(lambda: fake.recorder.active == 1)
        job_id = (await chat.post("/v1/jobs", json={"prompt": "too late"})).json()["id"]
        job = await wait_for(chat, job_id, status_is("expired"))
        await holder
    assert job["error"]["code"] == "job_expired"
    assert "too late" not in fake.recorder.prompts


async def test_idempotency_key(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    headers = {"Idempotency-Key": "order-7"}
    first = await chat.post("/v1/jobs", json={"prompt": "once"}, headers=headers)
    second = await chat.post("/v1/jobs", json={"prompt": "once"}, headers=headers)
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    conflict = await chat.post("/v1/jobs", json={"prompt": "twice?"}, headers=headers)
    assert conflict.status_code == 422
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    await wait_for(chat, first.json()["id"], status_is("succeeded"))
    assert fake.recorder.prompts == ["once"]


async def test_a_duplicate_delivery_runs_once(
    runner_app_fast: Starlette, chat: httpx.AsyncClient, fake: FakeOllama
) -> None:
    job_id = (await chat.post("/v1/jobs", json={"prompt": "only once"})).json()["id"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(runner_app_fast), base_url="http://runner.test"
    ) as runner:
        replays = await asyncio.gather(*(runner.post(f"/v1/jobs/{job_id}/run") for _ in range(3)))
    assert {r.status_code for r in replays} <= {200, 202}
    await wait_for(chat, job_id, status_is("succeeded"))
    # A job created after the replays runs after anything they queued (first in, first out).
    after = (await chat.post("/v1/jobs", json={"prompt": "after"})).json()["id"]
    await wait_for(chat, after, status_is("succeeded"))
    assert fake.recorder.prompts == ["only once", "after"]


async def test_jobs_and_chat_share_the_one_slot(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.005
    job_ids = [(await chat.post("/v1/jobs", json={"prompt": f"job {i}"})).json()["id"] for i in range(5)]
    syncs = await asyncio.gather(*(chat.post("/chat", json={"prompt": f"sync {i}"}) for i in range(5)))
    for job_id in job_ids:
        await wait_for(chat, job_id, status_is("succeeded"))
    assert {r.status_code for r in syncs} == {200}
    assert fake.recorder.peak == 1
    assert fake.recorder.completed == 10


async def test_a_full_queue_refuses_the_job_and_keeps_nothing(
    fake: FakeOllama, runner_settings_fast: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    fake.faults.token_delay_s = 0.1
    runner = create_runner_app(dataclasses.replace(runner_settings_fast, max_queue=1))
    async with make_chat(runner) as chat:
        busy = [asyncio.create_task(chat.post("/chat", json={"prompt": f"b{i}"})) for i in range(2)]
        await eventually(lambda: fake.recorder.active == 1)
        await until_waiting(chat, 1)  # one generating, one waiting: the queue is full
        refused = await chat.post("/v1/jobs", json={"prompt": "no room"})
        await asyncio.gather(*busy)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    assert list((tmp_path / "jobs").glob("*.json")) == []


async def test_jobs_body_is_validated_like_chat(chat: httpx.AsyncClient) -> None:
    streamed = await chat.post("/v1/jobs", json={"prompt": "hi", "stream": True})
    assert streamed.status_code == 422
    assert (await chat.post("/v1/jobs", json={"prompt": "hi", "model": "nope"})).status_code == 404


async def test_a_job_whose_ollama_refuses_fails_at_once_with_its_true_code(
    runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    """Not ``running`` until its lease lapses and then ``runner_lost``: the error inside the job's
    task group is the job's error."""
    refusing = dataclasses.replace(runner_settings, ollama_url=f"http://127.0.0.1:{free_port()}")
    async with make_chat(create_runner_app(refusing)) as chat:
        created = await chat.post("/v1/jobs", json={"prompt": "nobody answers"})
        assert created.status_code == 202
        started = time.monotonic()
        job = await wait_for(chat, created.json()["id"], status_is("failed", "succeeded"), timeout_s=10)
        settled_after = time.monotonic() - started
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_unavailable"
    assert "cannot be reached" in job["error"]["message"]
    assert settled_after < 2.0

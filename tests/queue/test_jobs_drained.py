"""Jobs are batch tickets that runners drain: none lost to a full queue or to a runner that dies."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from runner.settings import Settings as RunnerSettings
from servicekit.state.factory import StateSettings

from tests.conftest import runner_app_for
from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient
from tests.jobs.helpers import status_is, wait_for
from tests.servers import serve_in_thread, uvicorn_process
from tests.waiting import eventually


async def test_fifty_jobs_at_once_into_a_queue_of_two_are_refused_or_run_never_expired(
    fake: FakeOllama, runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    fake.faults.token_delay_s = 0.005
    settings = dataclasses.replace(runner_settings, max_queue=2)
    async with make_chat(runner_app_for(fake, settings)) as chat:
        posted = await asyncio.gather(*(chat.post("/v1/jobs", json={"prompt": f"job {i}"}) for i in range(50)))
        accepted = [r.json()["id"] for r in posted if r.status_code == 202]
        refused = [r for r in posted if r.status_code != 202]
        finals = [await wait_for(chat, job_id, status_is("succeeded", "failed", "expired")) for job_id in accepted]
        listed = (await chat.get("/v1/jobs", params={"limit": 100})).json()["jobs"]
    assert accepted, "some jobs must get in"
    assert refused, "a queue of two cannot take fifty at once"
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "queue_full"
        assert int(response.headers["retry-after"]) >= 1
    assert [job["status"] for job in finals] == ["succeeded"] * len(accepted)
    assert sorted(job["id"] for job in listed) == sorted(accepted)  # a refused job was never stored
    assert fake.recorder.peak == 1


@pytest.mark.slow
async def test_jobs_queued_in_a_runner_that_is_killed_are_run_by_another(tmp_path: Path) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.2  # ~0.6 s a job
    state = StateSettings(directory=str(tmp_path / "state"))
    with serve_in_thread(fake.app) as ollama_url:
        env = {
            "OLLAMA_HOST": ollama_url,
            "STATE_DIR": state.directory,
            "JOB_LEASE_S": "2",
            "JOB_PROGRESS_INTERVAL_S": "0.1",
        }
        with uvicorn_process("runner", "runner.app:app", env) as (first_url, first):
            chat_settings = ChatSettings(runner_url=first_url, state=state, auth="off")
            async with AppClient(create_chat_app(chat_settings), base_url="http://chat.test") as chat:
                ids = [(await chat.post("/v1/jobs", json={"prompt": f"job {i}"})).json()["id"] for i in range(4)]
                await wait_for(chat, ids[0], status_is("running"))
                os.kill(first.pid, signal.SIGKILL)
                first.wait()
                # Read once it is dead: a job it started between a read and the kill would fail (runner_lost).
                before = {job_id: (await chat.get(f"/v1/jobs/{job_id}")).json()["status"] for job_id in ids}
                with uvicorn_process("runner", "runner.app:app", env):  # another runner, started after
                    finals = {
                        job_id: await wait_for(chat, job_id, status_is("succeeded", "failed", "expired"))
                        for job_id in ids
                    }
    queued = [job_id for job_id, status in before.items() if status == "queued"]
    assert len(queued) >= 2, before
    assert {finals[job_id]["status"] for job_id in queued} == {"succeeded"}
    assert finals[ids[0]]["error"]["code"] == "runner_lost"  # the one it was running when it died
    assert fake.recorder.peak == 1


async def test_a_cancelled_queued_job_leaves_the_queue_at_once(
    fake: FakeOllama, runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    fake.faults.token_delay_s = 0.1
    async with make_chat(runner_app_for(fake, runner_settings)) as chat:
        busy = asyncio.create_task(chat.post("/chat", json={"prompt": "busy"}))
        await eventually(lambda: fake.recorder.active == 1)
        job_id = (await chat.post("/v1/jobs", json={"prompt": "never"})).json()["id"]
        assert (await chat.get(f"/v1/jobs/{job_id}")).json()["queue_position"] == 1
        assert (await chat.delete(f"/v1/jobs/{job_id}")).json()["status"] == "cancelled"
        assert (await chat.get("/readyz")).json()["runner"]["queue"] == {"interactive": 0, "batch": 0}
        assert (await busy).status_code == 200
    assert fake.recorder.prompts == ["busy"]

"""Classes through the real apps: requests a client waits on go before jobs, until a job has waited
BATCH_MAX_WAIT_S; then it goes first."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import httpx
import pytest
from runner.settings import Settings as RunnerSettings

from tests.conftest import runner_app_for
from tests.fake_ollama import FakeOllama
from tests.jobs.helpers import status_is, wait_for
from tests.waiting import eventually, until_waiting


@pytest.mark.parametrize(
    ("batch_max_wait_s", "expected"), [(120.0, ["busy", "c1", "c2", "job"]), (0.1, ["busy", "job", "c1", "c2"])]
)
async def test_jobs_wait_behind_chats_until_promoted(
    fake: FakeOllama,
    runner_settings: RunnerSettings,
    make_chat: Callable[..., httpx.AsyncClient],
    batch_max_wait_s: float,
    expected: list[str],
) -> None:
    fake.faults.token_delay_s = 0.1  # ~0.3 s a generation
    settings = dataclasses.replace(runner_settings, batch_max_wait_s=batch_max_wait_s)
    async with make_chat(runner_app_for(fake, settings)) as chat:
        busy = asyncio.create_task(chat.post("/chat", json={"prompt": "busy"}))
        await eventually(lambda: fake.recorder.active == 1)
        job = await chat.post("/v1/jobs", json={"prompt": "job"})
        assert job.status_code == 202
        chats = []
        for name in ("c1", "c2"):
            chats.append(asyncio.create_task(chat.post("/chat", json={"prompt": name})))
            await until_waiting(chat, len(chats) + 1)
        ready = (await chat.get("/readyz")).json()["runner"]
        assert ready["queue"] == {"interactive": 2, "batch": 1}
        assert ready["busy"] is True
        assert [r.status_code for r in await asyncio.gather(busy, *chats)] == [200] * 3
        await wait_for(chat, job.json()["id"], status_is("succeeded"))
    assert fake.recorder.prompts == expected

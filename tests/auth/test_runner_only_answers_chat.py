"""RUNNER_TOKEN: the runner answers chat and nobody else."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest
from chat.settings import Settings as ChatSettings
from runner.settings import Settings as RunnerSettings
from starlette.applications import Starlette

from tests.conftest import runner_app_for
from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def guarded_runner(fake: FakeOllama, runner_settings: RunnerSettings) -> Starlette:
    return runner_app_for(fake, dataclasses.replace(runner_settings, runner_token=TOKEN))


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
async def test_without_the_token_the_runner_refuses(
    guarded_runner: Starlette, fake: FakeOllama, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with AppClient(guarded_runner, base_url="http://runner.test") as runner:
        response = await runner.post("/v1/run/tinyllama", json={"prompt": "sneak"}, headers=headers)
        job = await runner.post("/v1/jobs/" + "0" * 32 + "/run", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert job.status_code == 401
    assert fake.recorder.prompts == []


async def test_chat_with_the_token_is_served(
    guarded_runner: Starlette, chat_settings: ChatSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    settings = dataclasses.replace(chat_settings, runner_token=TOKEN)
    async with make_chat(guarded_runner, settings) as chat:
        response = await chat.post("/chat", json={"prompt": "through chat"})
    assert response.status_code == 200
    assert response.json()["response"]


async def test_probes_need_no_token(guarded_runner: Starlette) -> None:
    async with AppClient(guarded_runner, base_url="http://runner.test") as runner:
        assert (await runner.get("/healthz")).status_code == 200
        assert (await runner.get("/readyz")).status_code == 200


async def test_without_a_token_only_loopback_is_served(runner_app: Starlette, fake: FakeOllama) -> None:
    remote = httpx.ASGITransport(runner_app, client=("192.0.2.44", 50000))
    async with AppClient(runner_app, base_url="http://runner.test") as local:
        assert (await local.post("/v1/run/tinyllama", json={"prompt": "from here"})).status_code == 200
        async with httpx.AsyncClient(transport=remote, base_url="http://runner.test") as other:
            refused = await other.post("/v1/run/tinyllama", json={"prompt": "from afar"})
    assert refused.status_code == 401
    assert fake.recorder.prompts == ["from here"]

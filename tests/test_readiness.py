"""Readiness checks the model: the runner's /readyz (with DEFAULT_MODEL set) answers 503 while Ollama
lacks it, saying how to pull it, and chat's /readyz passes that answer through."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest
from runner.settings import Settings as RunnerSettings

from tests.conftest import runner_app_for
from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient


@pytest.mark.parametrize("wanted", ["tinyllama", "tinyllama:latest"])
async def test_ready_when_ollama_has_the_model(
    runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient], wanted: str
) -> None:
    runner_app = runner_app_for(
        FakeOllama(models=("tinyllama",)), dataclasses.replace(runner_settings, ready_model=wanted)
    )
    async with make_chat(runner_app) as chat:
        response = await chat.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["runner"]["model"] == wanted


async def test_not_ready_while_ollama_lacks_the_model(
    runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    settings = dataclasses.replace(runner_settings, ready_model="llama3.2")
    runner_app = runner_app_for(FakeOllama(models=("tinyllama",)), settings)
    async with AppClient(runner_app, base_url="http://runner.test") as runner:
        direct = await runner.get("/readyz")
    async with make_chat(runner_app) as chat:
        relayed = await chat.get("/readyz")
    assert direct.status_code == relayed.status_code == 503
    message = direct.json()["error"]["message"]
    assert direct.json()["error"]["code"] == relayed.json()["error"]["code"] == "not_ready"
    assert "does not have the model 'llama3.2'" in message
    assert "ollama pull llama3.2" in message
    assert message in relayed.json()["error"]["message"]


async def test_without_a_model_ollama_answering_is_enough(runner_client: httpx.AsyncClient) -> None:
    response = await runner_client.get("/readyz")
    assert response.status_code == 200
    assert "model" not in response.json()


def test_the_runner_reads_the_model_from_default_model() -> None:
    assert RunnerSettings.from_env({"DEFAULT_MODEL": "llama3.2"}).ready_model == "llama3.2"
    assert RunnerSettings.from_env({}).ready_model == ""

"""Shared fixtures: the real apps chained in-process, with only Ollama faked."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from servicekit.state.factory import StateSettings
from starlette.applications import Starlette

from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture
def state_settings(tmp_path: Path) -> StateSettings:
    """One STATE_DIR (its SQLite database) for chat and runner, as in local mode."""
    return StateSettings(directory=str(tmp_path / "state"))


@pytest.fixture
def runner_settings(tmp_path: Path, state_settings: StateSettings) -> RunnerSettings:
    # In-process, every request comes from one address (one caller): let it have the whole queue
    # waiting; the per-caller cap has tests of its own (tests/queue).
    return RunnerSettings(
        lock_path=str(tmp_path / "runner.lock"),
        ollama_url="http://ollama.test",
        state=state_settings,
        max_waiting_per_caller=64,
    )


@pytest.fixture
def chat_settings(state_settings: StateSettings) -> ChatSettings:
    # Most tests are about something else than keys: no key needed (tests/auth sets AUTH itself).
    return ChatSettings(runner_url="http://runner.test", state=state_settings, auth="off")


def runner_app_for(fake: FakeOllama, settings: RunnerSettings) -> Starlette:
    return create_runner_app(settings, ollama_transport=httpx.ASGITransport(fake.app))


@pytest.fixture
def runner_app(fake: FakeOllama, runner_settings: RunnerSettings) -> Starlette:
    return runner_app_for(fake, runner_settings)


@pytest.fixture
async def runner_client(runner_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with AppClient(runner_app, base_url="http://runner.test") as client:
        yield client


@pytest.fixture
def make_chat(chat_settings: ChatSettings) -> Callable[..., httpx.AsyncClient]:
    """A chat client over the real chat app, itself over the given runner app, in-process (lifespans run)."""

    def make(runner_app: Starlette, settings: ChatSettings | None = None, **overrides: Any) -> httpx.AsyncClient:
        settings = dataclasses.replace(settings or chat_settings, **overrides)
        chat_app = create_chat_app(settings, runner_transport=httpx.ASGITransport(runner_app))
        return AppClient(chat_app, behind=[runner_app], base_url="http://chat.test")

    return make


@pytest.fixture
async def chat_client(
    runner_app: Starlette, make_chat: Callable[..., httpx.AsyncClient]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_chat(runner_app) as client:
        yield client

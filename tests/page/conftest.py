"""The page's real stack: the fake Ollama (a thread, so its recorder is readable) → one runner
process → chat processes under uvicorn, as the README runs them; and one browser for the module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from servicekit.state.factory import StateSettings

from tests.auth.helpers import add_key
from tests.fake_ollama import FakeOllama, Faults, Recorder
from tests.page.browser import launch
from tests.servers import serve_in_thread, uvicorn_process


@dataclass
class Stack:
    fake: FakeOllama
    runner: str
    chat: str  # AUTH=off: no key needed
    keyed_chat: str  # AUTH=required
    jobs_chat: str  # announces no streaming (PAGE_STREAMING=off), as chat does on AWS
    key: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped: sync Playwright runs an event loop in this thread while it is started, and
    the asyncio tests of later modules need the thread free of it."""
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("page-stack") / "state"
    fake = FakeOllama()
    runner_env = {
        "LOCK_PATH": str(state.parent / "runner.lock"),
        "STATE_DIR": str(state),
        "MAX_QUEUE": "1",
        "GENERATION_ESTIMATE_S": "2",
        "JOB_PROGRESS_INTERVAL_S": "0.1",
    }
    chat_env = {"STATE_DIR": str(state)}
    with (
        serve_in_thread(fake.app) as ollama_url,
        uvicorn_process("runner", "runner.app:app", {**runner_env, "OLLAMA_HOST": ollama_url}) as (runner, _),
    ):
        chat_env["RUNNER_URL"] = runner
        key = add_key(StateSettings(directory=str(state)), "browser")
        jobs_env = {**chat_env, "AUTH": "off", "PAGE_STREAMING": "off"}
        with (
            uvicorn_process("chat", "chat.app:app", {**chat_env, "AUTH": "off"}) as (chat, _),
            uvicorn_process("chat", "chat.app:app", {**chat_env, "AUTH": "required"}) as (keyed, _),
            uvicorn_process("chat", "chat.app:app", jobs_env) as (jobs, _),
        ):
            yield Stack(fake, runner, chat, keyed, jobs, key)


@pytest.fixture
def ollama(stack: Stack) -> FakeOllama:
    """The stack's fake Ollama, with fresh faults and an empty record for each test."""
    stack.fake.faults = Faults()
    stack.fake.recorder = Recorder()
    return stack.fake


@pytest.fixture
def screens(tmp_path: Path) -> Path:
    """Where each test saves a screenshot of every state it reaches."""
    path = tmp_path / "screens"
    path.mkdir()
    return path

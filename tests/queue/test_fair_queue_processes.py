"""The fair queue across real runner processes (``uvicorn --workers 2``), chat served in a thread.

Fake Ollama records the order prompts reach it; every test here is about that order, what the
clients are told while they wait, and what /readyz says meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from servicekit.state.factory import StateSettings

from tests.auth.helpers import add_key
from tests.fake_ollama import FakeOllama
from tests.servers import serve_in_thread, uvicorn_process
from tests.waiting import eventually, queue_depth, until_waiting

pytestmark = pytest.mark.slow


@contextmanager
def runners(fake: FakeOllama, state: StateSettings, workers: int = 2, **env: str) -> Iterator[str]:
    with serve_in_thread(fake.app) as ollama_url:
        runner_env = {"OLLAMA_HOST": ollama_url, "STATE_DIR": state.directory, **env}
        with uvicorn_process("runner", "runner.app:app", runner_env, extra_args=("--workers", str(workers))) as (
            url,
            _,
        ):
            yield url


@asynccontextmanager
async def chat_over(runner_url: str, state: StateSettings, auth: str = "off") -> AsyncIterator[httpx.AsyncClient]:
    settings = ChatSettings(runner_url=runner_url, state=state, auth=auth)  # type: ignore[arg-type]
    # A real server: streamed lines must reach the client as they are sent.
    with serve_in_thread(create_chat_app(settings)) as chat_url:
        async with httpx.AsyncClient(base_url=chat_url, timeout=60) as client:
            yield client


async def test_a_caller_with_one_request_is_not_stuck_behind_a_burst(tmp_path: Path) -> None:
    state = StateSettings(directory=str(tmp_path / "state"))
    heavy = add_key(state, "H", "--max-waiting", "12")
    light = add_key(state, "L")
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.05  # ~0.15 s a generation
    with runners(fake, state) as runner_url:
        async with chat_over(runner_url, state, auth="required") as chat:
            burst = [
                asyncio.create_task(
                    chat.post("/chat", json={"prompt": f"H{i}"}, headers={"Authorization": f"Bearer {heavy}"})
                )
                for i in range(12)
            ]
            await until_waiting(chat, 11)  # one generating, eleven waiting
            started_before = len(fake.recorder.prompts)
            alone = await chat.post("/chat", json={"prompt": "L"}, headers={"Authorization": f"Bearer {light}"})
            rest = await asyncio.gather(*burst)
    assert alone.status_code == 200, alone.text
    assert [r.status_code for r in rest] == [200] * 12
    assert fake.recorder.peak == 1
    prompts = fake.recorder.prompts
    # L runs within the next two generations after it asked (measured: it is the very next one).
    assert prompts.index("L") - started_before <= 1, prompts
    assert int(alone.headers["x-queue-position"]) <= 2
    print("served:", prompts, "L asked after", started_before)  # the fairness example, as measured


def has_lines(streams: dict[int, list[dict[str, object]]], index: int) -> bool:
    return bool(streams.get(index))


async def test_waiting_streams_hear_their_place_until_they_run(tmp_path: Path) -> None:
    state = StateSettings(directory=str(tmp_path / "state"))
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.2  # ~0.6 s a generation: all five join while "first" runs
    count = 5
    with runners(fake, state) as runner_url:
        async with chat_over(runner_url, state) as chat:
            blocker = asyncio.create_task(chat.post("/chat", json={"prompt": "first"}))
            await eventually(lambda: fake.recorder.active == 1)
            streams: dict[int, list[dict[str, object]]] = {}

            async def stream(index: int) -> None:
                lines: list[dict[str, object]] = []
                streams[index] = lines
                async with chat.stream("POST", "/chat", json={"prompt": f"s{index}", "stream": True}) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if line:
                            lines.append(json.loads(line))

            tasks = []
            for index in range(count):
                tasks.append(asyncio.create_task(stream(index)))
                await eventually(functools.partial(has_lines, streams, index))  # it has heard its first place
            assert await queue_depth(chat) == count  # /readyz counts exactly those waiting
            await asyncio.gather(*tasks)
            assert (await blocker).status_code == 200
    for index, lines in streams.items():
        positions = [line["queued"]["position"] for line in lines if "queued" in line]  # type: ignore[index]
        assert positions[0] == index + 1, (index, positions)
        assert positions[-1] == 0
        assert all(a > b for a, b in itertools.pairwise(positions)), (index, positions)
        assert lines[-1].get("done") is True
    # Served in the documented order: one caller, first in, first out.
    assert fake.recorder.prompts == ["first", *(f"s{i}" for i in range(count))]
    assert fake.recorder.peak == 1

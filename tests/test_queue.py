"""One generation at a time, first in first out for one caller, with a bounded queue: the real apps in one process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable

import httpx
import pytest
from runner.settings import Settings as RunnerSettings

from tests.conftest import runner_app_for
from tests.fake_ollama import FakeOllama
from tests.waiting import eventually, until_waiting


async def test_fifty_concurrent_chats_reach_ollama_one_at_a_time_in_queue_order(
    chat_client: httpx.AsyncClient, fake: FakeOllama
) -> None:
    fake.faults.token_delay_s = 0.001
    tasks = []
    for index in range(50):
        tasks.append(asyncio.create_task(chat_client.post("/chat", json={"prompt": f"p{index}"})))
        await asyncio.sleep(0)  # one loop turn: the requests start interleaved, as arriving clients do
    responses = await asyncio.gather(*tasks)
    assert [r.status_code for r in responses] == [200] * 50
    assert fake.recorder.peak == 1
    assert sorted(fake.recorder.prompts) == sorted(f"p{index}" for index in range(50))
    # Who stood further back when it joined waited longer (the handoff's writes go before the
    # burst's enqueue writes: servicekit.state.sqlite).
    by_position = sorted(responses, key=lambda r: int(r.headers["x-queue-position"]))
    assert int(by_position[-1].headers["x-queue-position"]) > 10
    assert float(by_position[-1].headers["x-queue-wait-ms"]) > float(by_position[0].headers["x-queue-wait-ms"])


async def test_streams_hold_the_slot_until_their_last_chunk(chat_client: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.005
    bodies = [{"prompt": f"s{i} x y", "stream": i % 2 == 0} for i in range(10)]
    responses = await asyncio.gather(*(chat_client.post("/chat", json=b) for b in bodies))
    assert {r.status_code for r in responses} == {200}
    assert fake.recorder.peak == 1
    assert fake.recorder.completed == 10


@pytest.mark.parametrize("stream", [False, True])  # a stream is refused before its status line: the same 503
async def test_full_queue_is_503_queue_full_with_retry_after(
    fake: FakeOllama, runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient], stream: bool
) -> None:
    fake.faults.token_delay_s = 0.1  # 3 tokens: each generation holds the slot ~0.3 s
    settings = dataclasses.replace(runner_settings, max_queue=2)
    async with make_chat(runner_app_for(fake, settings)) as client:
        held = [asyncio.create_task(client.post("/chat", json={"prompt": f"q{i}"})) for i in range(3)]
        await until_waiting(client, 2)  # one generating, two queued
        refused = await client.post("/chat", json={"prompt": "one too many", "stream": stream})
        served = await asyncio.gather(*held)
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "queue_full"
    assert error["queue_depth"] == 2
    assert int(refused.headers["retry-after"]) == error["retry_after_s"] >= 1
    assert [r.status_code for r in served] == [200, 200, 200]
    assert "one too many" not in fake.recorder.prompts


async def test_waiting_too_long_is_503_queue_timeout(
    fake: FakeOllama, runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    fake.faults.token_delay_s = 0.3
    settings = dataclasses.replace(runner_settings, queue_timeout_s=0.2)
    async with make_chat(runner_app_for(fake, settings)) as client:
        first = asyncio.create_task(client.post("/chat", json={"prompt": "slow"}))
        await eventually(lambda: fake.recorder.active == 1)
        started = time.perf_counter()
        second = await client.post("/chat", json={"prompt": "impatient", "stream": True})
        waited = time.perf_counter() - started
        assert (await first).status_code == 200
    # A stream's status line went out at once; its wait ended with the error line.
    assert second.status_code == 200
    lines = [json.loads(line) for line in second.text.splitlines()]
    assert lines[0] == {"queued": {"position": 1, "eta_s": lines[0]["queued"]["eta_s"]}}
    assert lines[-1]["error"]["code"] == "queue_timeout"
    assert lines[-1]["error"]["retry_after_s"] >= 1
    assert 0.2 <= waited < 1.0  # it did not wait for "slow" to finish
    assert fake.recorder.prompts == ["slow"]


async def test_retry_after_follows_measured_generation_time(
    fake: FakeOllama, runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    fake.faults.token_delay_s = 0.4  # ~1.2 s per generation, unlike the 5 s default estimate
    settings = dataclasses.replace(runner_settings, max_queue=1)
    async with make_chat(runner_app_for(fake, settings)) as client:
        await client.post("/chat", json={"prompt": "measure me"})
        held = [asyncio.create_task(client.post("/chat", json={"prompt": f"h{i}"})) for i in range(2)]
        await until_waiting(client, 1)
        refused = await client.post("/chat", json={"prompt": "refused"})
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
    assert refused.status_code == 503
    # the holder's remaining ~1.15 s, then the queued one's ~1.2 s
    assert int(refused.headers["retry-after"]) == 3


async def test_a_request_cancelled_while_queued_never_reaches_ollama(
    chat_client: httpx.AsyncClient, fake: FakeOllama, runner_app: object
) -> None:
    fake.faults.token_delay_s = 0.1
    first = asyncio.create_task(chat_client.post("/chat", json={"prompt": "first"}))
    await eventually(lambda: fake.recorder.active == 1)
    queued = asyncio.create_task(chat_client.post("/chat", json={"prompt": "gone"}))
    await until_waiting(chat_client, 1)
    queued.cancel()
    third = asyncio.create_task(chat_client.post("/chat", json={"prompt": "third"}))
    assert (await first).status_code == 200
    assert (await third).status_code == 200
    assert fake.recorder.prompts == ["first", "third"]

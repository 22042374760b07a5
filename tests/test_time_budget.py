"""A caller's time budget (``X-Time-Left-Ms``): the runner stops waiting and generating when it is spent.

On AWS chat sends it with every invoke, so a generation longer than chat's own Lambda limit
does not go on holding the one slot for nobody. Ollama is a real server on loopback here, so
"stopped" means its HTTP request was really closed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from servicekit.lambda_adapter import lambda_handler
from servicekit.timebudget import (
    LAMBDA_MARGIN_S,
    TIME_LEFT_HEADER,
    Deadline,
    lambda_time_left_s,
    time_left_header,
    time_left_s,
)

from local.lambda_context import LambdaContext
from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient
from tests.lambda_standin import InProcessLambda
from tests.servers import serve_in_thread
from tests.test_lambda_transport import chat_over
from tests.waiting import eventually

SLOW_TOKENS = 40  # 0.1 s apart: 4 s of generation unless something stops it


@pytest.fixture
def slow_fake() -> FakeOllama:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.1
    fake.faults.tokens = SLOW_TOKENS
    return fake


@pytest.fixture
def runner_settings_real(slow_fake: FakeOllama, tmp_path: Path) -> Iterator[RunnerSettings]:
    with serve_in_thread(slow_fake.app) as ollama_url:
        yield RunnerSettings(ollama_url=ollama_url, lock_path=str(tmp_path / "runner.lock"))


@pytest.fixture
async def runner(runner_settings_real: RunnerSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with AppClient(create_runner_app(runner_settings_real), base_url="http://runner.test") as client:
        yield client


async def _until_abandoned(fake: FakeOllama, within_s: float = 2.0) -> None:
    await eventually(lambda: fake.recorder.abandoned > 0, timeout_s=within_s, what="Ollama's request closed")


async def test_a_generation_past_the_budget_is_stopped_with_504(
    runner: httpx.AsyncClient, slow_fake: FakeOllama
) -> None:
    # Warm the runner's Ollama client first (its first use imports aiohttp: 0.2-0.4 s on a busy
    # 2-core machine), so the 300 ms below is spent generating, as the test means.
    assert (await runner.get("/readyz")).status_code == 200
    started = time.perf_counter()
    response = await runner.post("/v1/run/tinyllama", json={"prompt": "long"}, headers={"X-Time-Left-Ms": "300"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "deadline_exceeded"
    assert "/v1/jobs" in error["message"]
    assert 0.3 <= elapsed < 1.5  # at the budget, not after the 4 s generation
    await _until_abandoned(slow_fake)
    assert slow_fake.recorder.abandoned == 1  # Ollama's request was closed
    slow_fake.faults.tokens = 2
    after = await runner.post("/v1/run/tinyllama", json={"prompt": "next"}, headers={"X-Time-Left-Ms": "5000"})
    assert after.status_code == 200  # the slot was freed
    assert after.json()["response"] == "next next "


async def test_a_stream_past_the_budget_ends_with_an_error_line(
    runner: httpx.AsyncClient, slow_fake: FakeOllama
) -> None:
    response = await runner.post(
        "/v1/run/tinyllama", json={"prompt": "long", "stream": True}, headers={"X-Time-Left-Ms": "350"}
    )
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.status_code == 200  # the stream had started
    assert 1 <= len(lines) - 1 < SLOW_TOKENS
    assert all(line == {"response": "long "} for line in lines[:-1])
    assert lines[-1]["error"]["code"] == "deadline_exceeded"
    await _until_abandoned(slow_fake)
    assert slow_fake.recorder.abandoned == 1


async def test_the_budget_also_bounds_the_wait_for_the_slot(runner: httpx.AsyncClient, slow_fake: FakeOllama) -> None:
    slow_fake.faults.tokens = 10  # 1 s
    first = asyncio.create_task(runner.post("/v1/run/tinyllama", json={"prompt": "holder"}))
    await eventually(lambda: slow_fake.recorder.active == 1)
    started = time.perf_counter()
    waiting = await runner.post("/v1/run/tinyllama", json={"prompt": "late"}, headers={"X-Time-Left-Ms": "200"})
    elapsed = time.perf_counter() - started
    assert waiting.status_code == 503
    assert waiting.json()["error"]["code"] == "queue_timeout"
    assert int(waiting.headers["retry-after"]) >= 1
    assert elapsed < 0.8  # the budget, not QUEUE_TIMEOUT_S (300 s) nor the holder's 1 s
    assert (await first).status_code == 200  # no budget: runs to the end
    assert slow_fake.recorder.prompts == ["holder"]


@pytest.mark.parametrize("value", ["soon", "-5", "1.5", ""])
async def test_a_malformed_budget_is_422_before_anything_runs(
    runner: httpx.AsyncClient, slow_fake: FakeOllama, value: str
) -> None:
    response = await runner.post("/v1/run/tinyllama", json={"prompt": "hi"}, headers={"X-Time-Left-Ms": value})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert slow_fake.recorder.prompts == []


async def test_chat_on_lambda_hands_its_deadline_to_the_runner(
    runner_settings_real: RunnerSettings, slow_fake: FakeOllama
) -> None:
    """The AWS shape: chat (deadline 0.5 s) invokes the runner handler; the runner stops in time."""
    standin = InProcessLambda(lambda_handler(create_runner_app(runner_settings_real)))
    try:
        async with chat_over(standin, deadline_s=0.5) as chat:
            started = time.perf_counter()
            response = await chat.post("/chat", json={"prompt": "long"})
            elapsed = time.perf_counter() - started
            slow_fake.faults.tokens = 2
            after = await chat.post("/chat", json={"prompt": "short"})
    finally:
        standin.close()
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert elapsed < 1.5
    sent = int(standin.invocations[0]["headers"]["x-time-left-ms"])
    assert 300 < sent <= 500
    await _until_abandoned(slow_fake)
    assert slow_fake.recorder.abandoned == 1
    assert after.status_code == 200  # the slot was free for the next request
    assert after.json()["response"] == "short short "


async def test_chat_over_http_sets_no_budget(runner_settings_real: RunnerSettings, slow_fake: FakeOllama) -> None:
    """Over HTTP a client that gives up disconnects; a long local generation must still finish."""
    seen: list[str | None] = []
    runner_app = create_runner_app(runner_settings_real)

    async def recording(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(b"x-time-left-ms"))
        await runner_app(scope, receive, send)

    slow_fake.faults.tokens = 8  # 0.8 s, longer than chat's deadline below
    chat_app = create_chat_app(
        ChatSettings(runner_url="http://runner.test", chat_deadline_s=0.3, auth="off"),
        runner_transport=httpx.ASGITransport(recording),
    )
    async with AppClient(chat_app, behind=[runner_app], base_url="http://chat.test") as chat:
        response = await chat.post("/chat", json={"prompt": "local"})
    assert response.status_code == 200
    assert seen == [None]


def test_one_margin_and_one_clock_for_every_deadline() -> None:
    """servicekit.timebudget is the one home: the Lambda margin, the header and the deadline arithmetic."""
    context = LambdaContext(function_name="any", timeout_s=10)
    left = lambda_time_left_s({"aws.context": context})
    assert left is not None
    assert 10 - LAMBDA_MARGIN_S - 0.5 < left <= 10 - LAMBDA_MARGIN_S
    assert lambda_time_left_s({}) is None
    assert Deadline(None).cap(5.0) == 5.0
    assert 0 < Deadline(0.2).cap(5.0) <= 0.2
    assert Deadline(-1.0).cap(5.0) == 0.0  # never negative
    assert time_left_header(Deadline(0.25).left_s(0)) in ("249", "250")
    assert time_left_s({TIME_LEFT_HEADER: "1500"}) == 1.5

"""200 concurrent clients against chat and 4 runner processes with a small queue (real servers on loopback)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.fake_ollama import FakeOllama
from tests.servers import serve_in_thread, uvicorn_process

CLIENTS = 200
CLIENT_DEADLINE_S = 30.0


@pytest.mark.slow
async def test_overload_answers_200_or_503_with_retry_after_and_ollama_sees_one_at_a_time(tmp_path: Path) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.002
    with serve_in_thread(fake.app) as ollama_url:
        # One address sends everything: no per-caller cap, so the host-wide MAX_QUEUE is what refuses.
        runner_env = {
            "OLLAMA_HOST": ollama_url,
            "LOCK_PATH": str(tmp_path / "load.lock"),
            "MAX_QUEUE": "8",
            "QUEUE_TIMEOUT_S": "5",
            "STATE_DIR": str(tmp_path / "state"),
            "MAX_WAITING_PER_CALLER": str(CLIENTS),
        }
        with (
            uvicorn_process("runner", "runner.app:app", runner_env, extra_args=("--workers", "4")) as (runner_url, _),
            uvicorn_process("chat", "chat.app:app", {"RUNNER_URL": runner_url}) as (chat_url, _),
        ):
            limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
            async with httpx.AsyncClient(timeout=CLIENT_DEADLINE_S, limits=limits) as client:
                started = time.perf_counter()
                responses = await asyncio.gather(
                    *(client.post(f"{chat_url}/chat", json={"prompt": f"client {i}"}) for i in range(CLIENTS))
                )
                elapsed = time.perf_counter() - started
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 1
    for response in responses:
        if response.status_code == 503:
            error = response.json()["error"]
            assert error["code"] in ("queue_full", "queue_timeout")
            assert int(response.headers["retry-after"]) == error["retry_after_s"] >= 1
        else:
            assert response.json()["response"].startswith("client ")
    assert fake.recorder.peak == 1
    assert fake.recorder.completed == statuses.count(200)
    assert elapsed < CLIENT_DEADLINE_S

"""Injected faults over real sockets: Ollama killed mid-stream, a runner killed while it holds the slot.

(Elsewhere: Ollama stalling -> 504 and refusing connections -> 502 in test_upstream_errors.py;
clients leaving while queued or streaming in test_real_servers.py; a runner killed mid-job in
tests/jobs/test_runner_killed.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from servicekit.state.factory import StateSettings

from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient
from tests.servers import (
    fake_ollama_process,
    free_port,
    serve_in_thread,
    uvicorn_process,
)
from tests.waiting import eventually, until_waiting

pytestmark = pytest.mark.slow


async def test_ollama_killed_mid_stream(tmp_path: Path) -> None:
    port = free_port()
    ollama_url = f"http://127.0.0.1:{port}"
    state = StateSettings(directory=str(tmp_path / "state"))
    runner = create_runner_app(RunnerSettings(ollama_url=ollama_url, lock_path=str(tmp_path / "r.lock"), state=state))
    with serve_in_thread(runner) as runner_url:
        chat_app = create_chat_app(ChatSettings(runner_url=runner_url, state=state, auth="off"))
        async with AppClient(chat_app, base_url="http://chat.test") as chat:
            with fake_ollama_process(port, token_delay_s=0.05, tokens=200) as ollama:
                streaming = asyncio.create_task(chat.post("/chat", json={"prompt": "doomed", "stream": True}))
                async with httpx.AsyncClient() as probe:

                    async def chunks_out() -> bool:
                        return int((await probe.get(f"{ollama_url}/_fake/stats")).json()["chunks_sent"]) >= 2

                    await eventually(chunks_out, what="a few chunks out")
                os.kill(ollama.pid, signal.SIGKILL)
                response = await asyncio.wait_for(streaming, 10)
            lines = [json.loads(line) for line in response.text.splitlines()]
            assert response.status_code == 200  # the stream had started
            assert lines[0] == {"response": "doomed "}
            assert lines[-1]["error"]["code"] == "upstream_error"
            assert "mid-stream" in lines[-1]["error"]["message"]
            # Ollama comes back on the same port: the slot was freed, the next request is served.
            with fake_ollama_process(port, token_delay_s=0.0, tokens=2):
                after = await chat.post("/chat", json={"prompt": "alive again"})
    assert after.status_code == 200
    assert after.json()["response"] == "alive again "


async def test_a_runner_killed_while_holding_the_slot_lets_another_process_serve(tmp_path: Path) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.25
    fake.faults.tokens = 40  # ~10 s: far longer than the test waits
    with serve_in_thread(fake.app) as ollama_url:
        env = {
            "OLLAMA_HOST": ollama_url,
            "LOCK_PATH": str(tmp_path / "shared.lock"),
            "STATE_DIR": str(tmp_path / "state"),
        }
        with (
            uvicorn_process("runner", "runner.app:app", env) as (url_a, process_a),
            uvicorn_process("runner", "runner.app:app", env) as (url_b, _),
        ):
            async with httpx.AsyncClient(timeout=30) as client:
                holder = asyncio.create_task(client.post(f"{url_a}/v1/run/tinyllama", json={"prompt": "holder"}))
                await eventually(lambda: fake.recorder.active == 1)
                fake.faults.tokens = 2
                waiter = asyncio.create_task(client.post(f"{url_b}/v1/run/tinyllama", json={"prompt": "waiter"}))
                await until_waiting(client, 1, url=url_b)
                assert not waiter.done()  # queued behind the holder, in another process
                os.kill(process_a.pid, signal.SIGKILL)
                killed_at = time.perf_counter()
                served = await asyncio.wait_for(waiter, 10)
                waited_after_kill = time.perf_counter() - killed_at
                with pytest.raises(httpx.HTTPError):
                    await holder
    assert served.status_code == 200
    assert served.json()["response"] == "waiter waiter "
    assert waited_after_kill < 2.0  # the kernel dropped the dead holder's lock at once
    assert fake.recorder.prompts == ["holder", "waiter"]

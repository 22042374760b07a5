"""Over real sockets: several runner processes sharing one lock, and clients that walk away.

The fake Ollama and (where one process is enough) the runner are served by uvicorn on loopback;
the multi-process test starts ``uvicorn --app-dir functions/runner runner.app:app`` as the README does.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings

from tests.fake_ollama import FakeOllama
from tests.servers import serve_in_thread, uvicorn_process
from tests.waiting import eventually, until_waiting


@pytest.mark.slow
async def test_three_runner_processes_share_one_slot(tmp_path: Path) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.002
    lock = str(tmp_path / "shared.lock")
    with serve_in_thread(fake.app) as ollama_url:
        # One client address sends all 30 at once: let it have them all waiting.
        env = {
            "OLLAMA_HOST": ollama_url,
            "LOCK_PATH": lock,
            "STATE_DIR": str(tmp_path / "state"),
            "MAX_WAITING_PER_CALLER": "30",
        }
        with (
            uvicorn_process("runner", "runner.app:app", env) as (url_a, _),
            uvicorn_process("runner", "runner.app:app", env) as (url_b, _),
            uvicorn_process("runner", "runner.app:app", env) as (url_c, _),
        ):
            urls = [url_a, url_b, url_c]
            async with httpx.AsyncClient(timeout=60) as client:
                responses = await asyncio.gather(
                    *(
                        client.post(f"{urls[i % 3]}/v1/run/tinyllama", json={"prompt": f"p{i}", "stream": i % 2 == 1})
                        for i in range(30)
                    )
                )
    assert [r.status_code for r in responses] == [200] * 30
    assert fake.recorder.peak == 1
    assert sorted(fake.recorder.prompts) == sorted(f"p{i}" for i in range(30))
    assert fake.recorder.completed == 30


async def test_client_gone_while_queued_never_reaches_ollama(tmp_path: Path) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.15
    with serve_in_thread(fake.app) as ollama_url:
        settings = RunnerSettings(ollama_url=ollama_url, lock_path=str(tmp_path / "r.lock"))
        with serve_in_thread(create_runner_app(settings)) as runner_url:
            async with httpx.AsyncClient(timeout=10) as client:
                first = asyncio.create_task(client.post(f"{runner_url}/v1/run/tinyllama", json={"prompt": "first"}))
                await eventually(lambda: fake.recorder.active == 1)
                with pytest.raises(TimeoutError):
                    async with httpx.AsyncClient() as impatient:
                        await asyncio.wait_for(
                            impatient.post(f"{runner_url}/v1/run/tinyllama", json={"prompt": "walked away"}), 0.1
                        )
                await until_waiting(client, 0, url=runner_url)
                assert not first.done()  # it left the queue at once, while the first still holds the slot
                assert (await first).status_code == 200
                after = await client.post(f"{runner_url}/v1/run/tinyllama", json={"prompt": "after"})
    assert after.status_code == 200
    assert fake.recorder.prompts == ["first", "after"]


async def test_client_gone_while_streaming_closes_the_ollama_request(tmp_path: Path) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.3  # longer than the bound below: closing must not wait for a token
    fake.faults.tokens = 200  # a minute if nobody stops it
    with serve_in_thread(fake.app) as ollama_url:
        # Tokens 0.3 s apart are slower than the default settle cap (0.25 s): let the settle cover one.
        settings = RunnerSettings(ollama_url=ollama_url, lock_path=str(tmp_path / "r.lock"), settle_max_s=0.5)
        with serve_in_thread(create_runner_app(settings)) as runner_url:
            async with httpx.AsyncClient(timeout=10) as client:
                async with client.stream(
                    "POST", f"{runner_url}/v1/run/tinyllama", json={"prompt": "long", "stream": True}
                ) as response:
                    async for _line in response.aiter_lines():
                        break  # one chunk, then hang up
                closed_at = time.perf_counter()
                await eventually(lambda: fake.recorder.clients_gone > 0, timeout_s=2)
                upstream_closed_after = time.perf_counter() - closed_at
                fake.faults.tokens = 2
                after = await client.post(f"{runner_url}/v1/run/tinyllama", json={"prompt": "next"})
    assert fake.recorder.clients_gone == 1
    assert upstream_closed_after < 0.1  # the Ollama request is closed at once, not at the next token
    assert fake.recorder.abandoned == 1  # and the fake, like Ollama, stopped generating at its next token
    assert after.status_code == 200  # the slot was freed
    assert fake.recorder.peak == 1

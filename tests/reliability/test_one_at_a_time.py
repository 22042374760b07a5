"""One generation at Ollama at a time, at the edges too: dropped requests and a holder killed mid-generation.

Real runner processes, and a fake Ollama that behaves as Ollama does here: it notices a closed
request only when its next token is ready (a non-streamed one, never). Without the runner
always streaming and settling before the slot passes on, each case below shows a peak of 2.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import signal
from pathlib import Path

import httpx
import pytest

from tests.fake_ollama import FakeOllama
from tests.servers import serve_in_thread, uvicorn_process
from tests.waiting import eventually, until_waiting

pytestmark = pytest.mark.slow

DROPS = 50


def prompts_beyond(fake: FakeOllama, count: int) -> bool:
    return len(fake.recorder.prompts) > count


async def test_dropped_non_streamed_requests_never_overlap_at_ollama(tmp_path: Path) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.02
    fake.faults.tokens = 25  # 0.5 s: every request below is dropped long before its end
    rng = random.Random(10)
    with serve_in_thread(fake.app) as ollama_url:
        env = {"OLLAMA_HOST": ollama_url, "STATE_DIR": str(tmp_path / "state")}
        with uvicorn_process("runner", "runner.app:app", env, extra_args=("--workers", "2")) as (url, _):
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:

                def ask(index: int) -> asyncio.Task[httpx.Response]:
                    request = client.post(f"{url}/v1/run/tinyllama", json={"prompt": f"drop{index}"})
                    return asyncio.create_task(request)

                # Whichever request reaches Ollama is dropped mid-generation while another already
                # waits for the slot (in either process: the order between processes is not ours here).
                asking = {f"drop{i}": ask(i) for i in range(2)}
                for served in range(DROPS):
                    await eventually(functools.partial(prompts_beyond, fake, served))
                    await asyncio.sleep(rng.uniform(0.045, 0.085))  # 2-4 tokens in, anywhere between two
                    dropped = asking.pop(fake.recorder.prompts[served])
                    dropped.cancel()  # the client hangs up: httpx closes its connection
                    await asyncio.gather(dropped, return_exceptions=True)
                    if served + 2 < DROPS:
                        asking[f"drop{served + 2}"] = ask(served + 2)
                await eventually(lambda: fake.recorder.active == 0)
    assert sorted(fake.recorder.prompts) == sorted(f"drop{i}" for i in range(DROPS))
    assert fake.recorder.abandoned == DROPS  # each stopped at its next token, as Ollama does
    assert fake.recorder.peak == 1


async def test_a_holder_killed_mid_generation_never_overlaps_the_next(tmp_path: Path) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.05
    fake.faults.tokens = 100  # 5 s unless something stops it
    with serve_in_thread(fake.app) as ollama_url:
        env = {"OLLAMA_HOST": ollama_url, "STATE_DIR": str(tmp_path / "state")}
        with (
            uvicorn_process("runner", "runner.app:app", env) as (url_a, process_a),
            uvicorn_process("runner", "runner.app:app", env) as (url_b, _),
        ):
            async with httpx.AsyncClient(timeout=30) as client:
                for url in (url_a, url_b):  # each has its Ollama client ready (the first use imports aiohttp)
                    assert (await client.get(f"{url}/readyz")).status_code == 200
                holder = asyncio.create_task(client.post(f"{url_a}/v1/run/tinyllama", json={"prompt": "holder"}))
                await eventually(lambda: fake.recorder.active == 1)
                waiter = asyncio.create_task(client.post(f"{url_b}/v1/run/tinyllama", json={"prompt": "waiter"}))
                await until_waiting(client, 1, url=url_b)  # a few tokens out; the waiter queued in the other process
                assert not waiter.done()
                fake.faults.tokens = 2
                os.kill(process_a.pid, signal.SIGKILL)  # the kernel frees its lock at once
                served = await asyncio.wait_for(waiter, 10)
                await asyncio.gather(holder, return_exceptions=True)
    assert served.status_code == 200
    assert fake.recorder.prompts == ["holder", "waiter"]
    assert fake.recorder.abandoned == 1  # the dead holder's generation stopped at its next token...
    assert fake.recorder.peak == 1  # ...before the survivor's request reached Ollama

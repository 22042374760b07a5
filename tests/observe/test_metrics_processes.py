"""/metrics on a real chat adds up the samples of every process (chat's and two runner workers'),
and reads the queue as the store holds it while tickets of both workers wait in it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from servicekit.state.factory import StateSettings

from tests.auth.helpers import add_key
from tests.fake_ollama import FakeOllama
from tests.observe.helpers import Samples, samples, total, value
from tests.servers import serve_in_thread, uvicorn_process
from tests.waiting import eventually

pytestmark = pytest.mark.slow
P = "ollama_chat_"
RUN_ROUTE = "/v1/run/{model:path}"


def runner_pids_with_counters(directory: Path) -> set[str]:
    return {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}


async def scrape_until(client: httpx.AsyncClient, ops: dict[str, str], holds: Callable[[Samples], bool]) -> Samples:
    """The /metrics samples once ``holds`` is true of them (for at most 10 s)."""
    last: list[str] = [""]

    async def shown() -> bool:
        response = await client.get("/metrics", headers=ops)
        assert response.status_code == 200
        last[0] = response.text
        return holds(samples(last[0]))

    try:
        await eventually(shown, what="/metrics showing it")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last:\n{last[0]}") from None
    return samples(last[0])


async def test_a_scripted_mix_across_two_runner_workers(tmp_path: Path) -> None:
    fake = FakeOllama()
    state, metrics_dir = tmp_path / "state", tmp_path / "metrics"
    settings = StateSettings(directory=str(state))
    alice = {"Authorization": f"Bearer {add_key(settings, 'alice', '--max-waiting', '1')}"}
    bob = {"Authorization": f"Bearer {add_key(settings, 'bob')}"}
    ops = {"Authorization": f"Bearer {add_key(settings, 'ops')}"}
    common = {"STATE_DIR": str(state), "DEFAULT_MODEL": "tinyllama"}
    with (
        serve_in_thread(fake.app) as ollama_url,
        uvicorn_process(
            "runner",
            "runner.app:app",
            extra_args=("--workers", "2"),
            env={
                **common,
                "OLLAMA_HOST": ollama_url,
                "MAX_QUEUE": "3",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir / "runner"),
            },
        ) as (runner_url, _),
        uvicorn_process(
            "chat",
            "chat.app:app",
            env={
                **common,
                "RUNNER_URL": runner_url,
                "AUTH": "required",
                "METRICS_KEYS": "ops",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            },
        ) as (chat_url, _),
    ):
        # Chat keeps its connections to the runner, so whichever worker accepted them serves them
        # all. A new connection per request (loopback may call the runner directly) reaches both
        # workers as the kernel hands them out; keep going (bounded) until both have counted some.
        direct = 0
        async with httpx.AsyncClient(base_url=runner_url, timeout=15, headers={"Connection": "close"}) as runner:
            deadline = time.monotonic() + 20
            while len(runner_pids_with_counters(metrics_dir / "runner")) < 2:
                assert time.monotonic() < deadline, "the second runner worker never served a request"
                assert (await runner.post("/v1/run/tinyllama", json={"prompt": "d"})).status_code == 200
                direct += 1
        sent = 8
        async with httpx.AsyncClient(base_url=chat_url, timeout=15) as client:
            for _ in range(sent // 4):  # four at a time: one runs, three wait (MAX_QUEUE)
                replies = await asyncio.gather(
                    *(client.post("/chat", json={"prompt": "a b"}, headers=bob) for _ in range(4))
                )
                assert [r.status_code for r in replies] == [200] * 4
            streamed = await client.post("/chat", json={"prompt": "s t", "stream": True}, headers=bob)
            assert streamed.status_code == 200
            assert (await client.post("/chat", json={"prompt": "x"})).status_code == 401
            job = await client.post("/v1/jobs", json={"prompt": "a job"}, headers=bob)
            assert job.status_code == 202
            job_url = f"/v1/jobs/{job.json()['id']}"

            async def job_ran() -> bool:
                return bool((await client.get(job_url, headers=bob)).json()["status"] == "succeeded")

            await eventually(job_ran, what="the job running")

            # Hold the slot (a slow generation) and fill the queue: alice may have one waiting,
            # the host three. Each step waits until the store shows the one before it.
            fake.faults.token_delay_s = 0.5

            def chat(headers: dict[str, str]) -> asyncio.Task[httpx.Response]:
                return asyncio.create_task(client.post("/chat", json={"prompt": "slow"}, headers=headers))

            def waiting(n: int) -> Callable[[Samples], bool]:
                return lambda found: value(found, P + "queue_depth", **{"class": "interactive"}) == n

            running = chat(alice)
            await scrape_until(client, ops, lambda found: value(found, P + "slot_busy") == 1)
            alice_waits = chat(alice)
            await scrape_until(client, ops, waiting(1))
            assert (await client.post("/chat", json={"prompt": "x"}, headers=alice)).status_code == 429
            bob_waits = [chat(bob), chat(bob)]
            held = await scrape_until(client, ops, waiting(3))
            assert (await client.post("/chat", json={"prompt": "x"}, headers=bob)).status_code == 503
            fake.faults.token_delay_s = 0.0
            assert [(await task).status_code for task in (running, alice_waits, *bob_waits)] == [200] * 4
            interactive = sent + 1 + 4
            done = await scrape_until(
                client,
                ops,
                lambda found: (
                    value(found, P + "queue_wait_seconds_count", **{"class": "interactive"}) == interactive + direct
                    and value(found, P + "slot_busy") == 0
                ),
            )

    # While the slot was held: three tickets waited (one each from whichever workers), none of them a job.
    assert value(held, P + "queue_depth", **{"class": "batch"}) == 0
    assert value(held, P + "queue_oldest_wait_seconds") > 0
    assert value(held, P + "slot_busy") == 1

    requests = P + "requests_total"
    assert value(done, requests, service="chat", route="/chat", status="200", code="") == interactive
    assert value(done, requests, service="runner", route=RUN_ROUTE, status="200", code="") == interactive + direct
    for service, route in (("chat", "/chat"), ("runner", RUN_ROUTE)):
        assert value(done, requests, service=service, route=route, status="429", code="too_many_requests") == 1
        assert value(done, requests, service=service, route=route, status="503", code="queue_full") == 1
    assert value(done, requests, service="chat", route="/chat", status="401", code="unauthorized") == 1
    assert value(done, requests, service="chat", route="/v1/jobs", status="202", code="") == 1
    # Every ticket that got the slot, on either worker: the requests and the job.
    assert value(done, P + "queue_wait_seconds_count", **{"class": "batch"}) == 1
    assert value(done, P + "queue_depth", **{"class": "interactive"}) == 0
    assert value(done, P + "queue_oldest_wait_seconds") == 0
    # Bob's job counts as his too, reported by whichever worker ran it.
    assert value(done, requests, service="runner", route="job", status="200", code="") == 1
    assert value(done, P + "generation_seconds_count", model="tinyllama") == interactive + direct + 1
    assert total(done, P + "tokens_out_total", model="tinyllama", caller="anonymous") == fake.faults.tokens * direct
    assert total(done, P + "tokens_out_total", model="tinyllama", caller="bob") == fake.faults.tokens * (sent + 4)
    assert total(done, P + "tokens_out_total", model="tinyllama", caller="alice") == fake.faults.tokens * 2
    assert value(done, P + "jobs", status="succeeded") == 1
    assert value(done, P + "keys", state="active") == 3
    assert len(runner_pids_with_counters(metrics_dir / "runner")) == 2

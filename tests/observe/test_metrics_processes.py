"""/metrics on a real chat adds up the samples of every process: chat's and two runner workers'."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.fake_ollama import FakeOllama
from tests.observe.helpers import samples, total, value
from tests.servers import serve_in_thread, uvicorn_process

pytestmark = pytest.mark.slow
P = "ollama_chat_"


def runner_pids_with_counters(directory: Path) -> set[str]:
    return {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}


async def test_metrics_add_up_two_runner_workers_and_chat(tmp_path: Path) -> None:
    fake = FakeOllama()
    state, metrics_dir = tmp_path / "state", tmp_path / "metrics"
    common = {"STATE_DIR": str(state), "DEFAULT_MODEL": "tinyllama"}
    with (
        serve_in_thread(fake.app) as ollama_url,
        uvicorn_process(
            "runner", "runner.app:app", extra_args=("--workers", "2"),
            env={**common, "OLLAMA_HOST": ollama_url, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir / "runner")},
        ) as (runner_url, _),
        uvicorn_process(
            "chat", "chat.app:app",
            env={**common, "RUNNER_URL": runner_url, "AUTH": "off", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        ) as (chat_url, _),
    ):  # fmt: skip
        sent = 0
        async with httpx.AsyncClient(base_url=chat_url, timeout=10) as client:
            # Concurrent requests open several chat→runner connections, which the kernel spreads
            # over both workers; keep going (bounded) until both have counted some.
            deadline = time.monotonic() + 20
            while len(runner_pids_with_counters(metrics_dir / "runner")) < 2 or sent < 8:
                assert time.monotonic() < deadline, "the second runner worker never served a request"
                replies = await asyncio.gather(*(client.post("/chat", json={"prompt": "a b"}) for _ in range(4)))
                assert [r.status_code for r in replies] == [200] * 4
                sent += 4
            streamed = await client.post("/chat", json={"prompt": "s t", "stream": True})
            assert streamed.status_code == 200
            assert (await client.post("/chat", json={"prompt": ""})).status_code == 422
            scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    found = samples(scraped.text)
    run_route = "/v1/run/{model:path}"
    assert value(found, P + "requests_total", service="runner", route=run_route, status="200", code="") == sent + 1
    assert value(found, P + "requests_total", service="chat", route="/chat", status="200", code="") == sent + 1
    assert value(found, P + "requests_total", service="chat", route="/chat", status="422", code="invalid_request") == 1
    assert value(found, P + "generation_seconds_count", model="tinyllama") == sent + 1
    tokens_out = total(found, P + "tokens_out_total", model="tinyllama", caller="anonymous")
    assert tokens_out == fake.faults.tokens * (sent + 1)
    assert len(runner_pids_with_counters(metrics_dir / "runner")) == 2

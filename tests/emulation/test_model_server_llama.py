"""The local model server with the real engine: SmolLM2-135M through llama-cpp-python."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make test installs it)")

from local.ollama.llama_engine import LlamaEngine, ModelFileMissing, default_model_path
from local.ollama.server import create_app
from tests.servers import serve_in_thread

MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def engine() -> LlamaEngine:
    try:
        path = default_model_path()
    except ModelFileMissing as exc:
        pytest.skip(str(exc))
    return LlamaEngine(path, threads=1)  # one thread stays fast when CI runs other work beside it


@pytest.fixture
async def ollama(engine: LlamaEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ollama.test", timeout=60) as c:
        yield c


def _generate(prompt: str, **options: object) -> dict[str, object]:
    return {"model": MODEL, "prompt": prompt, "stream": False, "options": {"num_predict": 24, **options}}


async def test_answers_with_real_text(ollama: httpx.AsyncClient) -> None:
    reply = (await ollama.post("/api/generate", json=_generate("What is the capital of France?"))).json()
    assert len(str(reply["response"]).strip()) > 0
    assert reply["eval_count"] > 0
    assert reply["prompt_eval_count"] > 5  # the chat template wraps the prompt
    assert reply["eval_duration"] > 0


async def test_streams_several_chunks(ollama: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to five."}], "options": {"num_predict": 16}}
    response = await ollama.post("/api/chat", json=body)
    lines = [json.loads(line) for line in response.text.splitlines()]
    pieces = [line["message"]["content"] for line in lines if not line["done"]]
    assert len(pieces) >= 4
    assert lines[-1]["done"] is True
    assert lines[-1]["eval_count"] == len(pieces)


async def test_seed_makes_sampling_reproducible(ollama: httpx.AsyncClient) -> None:
    body = _generate("Tell me a story about a cat.", temperature=1.0, seed=1234)
    first = (await ollama.post("/api/generate", json=body)).json()["response"]
    second = (await ollama.post("/api/generate", json=body)).json()["response"]
    assert first == second


async def test_num_predict_caps_the_tokens(ollama: httpx.AsyncClient) -> None:
    reply = (
        await ollama.post("/api/generate", json=_generate("Write a long essay about the sea.", num_predict=5))
    ).json()
    assert reply["eval_count"] <= 5
    assert reply["done_reason"] == "length"


async def test_show_reads_the_gguf_metadata(ollama: httpx.AsyncClient) -> None:
    await ollama.post("/api/generate", json={"model": MODEL})
    show = (await ollama.post("/api/show", json={"model": MODEL})).json()
    assert "im_start" in show["template"]
    assert show["details"]["quantization_level"] == "Q4_1"
    assert show["model_info"]["general.architecture"] == "llama"


async def test_a_closed_request_stops_the_generation(engine: LlamaEngine) -> None:
    with serve_in_thread(create_app(engine)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            body = {"model": MODEL, "prompt": "Write a very long story.", "options": {"num_predict": 2000}}
            async with client.stream("POST", "/api/generate", json=body) as response:
                async for _line in response.aiter_lines():
                    break
            closed_at = time.perf_counter()
            stats: dict[str, int] = {}
            while time.perf_counter() - closed_at < 5:
                stats = (await client.get("/_local/stats")).json()
                if stats["active"] == 0:
                    break
                await asyncio.sleep(0.02)
            stopped_after = time.perf_counter() - closed_at
            after = (await client.post("/api/generate", json=_generate("hi", num_predict=3))).json()
    assert stats["cancelled"] == 1
    assert stats["active"] == 0
    assert stopped_after < 1.0  # 2000 tokens would take ~20 s
    assert after["done"] is True

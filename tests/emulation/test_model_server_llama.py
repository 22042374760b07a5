"""The local model server with the real engine: SmolLM2-135M through llama-cpp-python."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import cast, get_type_hints

import httpx
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make test installs it)")

from servicekit.generation import GenerationOptions

from local.ollama.llama_engine import APPLIED_APART, SAMPLING, LlamaEngine
from local.ollama.model_file import ModelFileMissing, default_model_path
from local.ollama.server import create_app
from tests.servers import serve_in_thread
from tests.waiting import eventually

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
    options = {"num_predict": 16, "temperature": 0}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to five."}], "options": options}
    response = await ollama.post("/api/chat", json=body)
    lines = [json.loads(line) for line in response.text.splitlines()]
    pieces = [line["message"]["content"] for line in lines if not line["done"]]
    assert len(pieces) >= 4
    assert lines[-1]["done"] is True
    # Plain words come one token a piece; an end-of-turn token that ends the answer counts too.
    ended = 1 if lines[-1]["done_reason"] == "stop" else 0
    assert lines[-1]["eval_count"] == len(pieces) + ended
    assert lines[-1]["eval_count"] <= 16


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

            async def stopped() -> bool:
                stats.update((await client.get("/_local/stats")).json())
                return stats["active"] == 0

            await eventually(stopped, timeout_s=5, what="the generation stopped")
            stopped_after = time.perf_counter() - closed_at
            after = (await client.post("/api/generate", json=_generate("hi", num_predict=3))).json()
    assert stats["cancelled"] == 1
    assert stats["active"] == 0
    assert stopped_after < 1.0  # 2000 tokens would take ~20 s
    assert after["done"] is True


async def test_eval_count_counts_tokens_not_pieces(ollama: httpx.AsyncClient) -> None:
    # Measured at temperature 0: 12 tokens make 4 pieces ("🐶", "🐱", "🐭", "\n"), as an emoji spans
    # several tokens; the count used to be the pieces.
    body = {"model": MODEL, "prompt": "Write three emoji: 🐶🐱🐭", "options": {"num_predict": 12, "temperature": 0}}
    lines = [json.loads(line) for line in (await ollama.post("/api/generate", json=body)).text.splitlines()]
    pieces = [line["response"] for line in lines if not line["done"]]
    assert (lines[-1]["eval_count"], lines[-1]["done_reason"]) == (12, "length")
    assert len(pieces) < 12


async def test_format_json_answers_parseable_json(ollama: httpx.AsyncClient) -> None:
    body = {
        "model": MODEL,
        "prompt": "What color is the sky at different times of the day? Respond using JSON",
        "format": "json",
        "stream": False,
        "options": {"temperature": 0, "num_predict": 300},
    }
    reply = (await ollama.post("/api/generate", json=body)).json()
    assert reply["done_reason"] == "stop"  # measured: 95 tokens
    assert isinstance(json.loads(reply["response"]), dict)


async def test_format_schema_is_enforced(ollama: httpx.AsyncClient) -> None:
    import jsonschema

    schema = {
        "type": "object",
        "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
        "required": ["age", "available"],
    }
    text = "Ollama is 22 years old and busy saving the world. Return a JSON object with the age and availability."
    for temperature in (0, 1.0):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": text}],
            "format": schema,
            "stream": False,
            "options": {"temperature": temperature, "seed": 7, "num_predict": 100},
        }
        reply = (await ollama.post("/api/chat", json=body)).json()
        jsonschema.validate(json.loads(reply["message"]["content"]), schema)


async def test_an_unusable_schema_is_400_before_streaming(ollama: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "prompt": "x", "format": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}
    response = await ollama.post("/api/generate", json=body)
    assert response.status_code == 400
    assert "format" in response.json()["error"]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embed_answers_real_embeddings(ollama: httpx.AsyncClient, engine: LlamaEngine) -> None:
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly revenue grew by ten percent."]
    reply = (await ollama.post("/api/embed", json={"model": MODEL, "input": texts})).json()
    cat, kitten, revenue = reply["embeddings"]
    assert len(cat) == int(engine.card.model_info["llama.embedding_length"]) == 576
    assert abs(_cosine(cat, cat) - 1) < 1e-6
    # Measured: cat-kitten 0.92, cat-revenue 0.72, kitten-revenue 0.72.
    assert _cosine(cat, kitten) > max(_cosine(cat, revenue), _cosine(kitten, revenue)) + 0.1
    assert reply["prompt_eval_count"] == 24
    legacy = (await ollama.post("/api/embeddings", json={"model": MODEL, "prompt": texts[0]})).json()
    norm = _cosine(legacy["embedding"], legacy["embedding"]) ** 0.5
    assert _cosine([x / norm for x in legacy["embedding"]], cat) > 0.9999


async def test_tags_describe_the_file(ollama: httpx.AsyncClient, engine: LlamaEngine) -> None:
    (listed,) = (await ollama.get("/api/tags")).json()["models"]
    stat = engine.model_path.stat()
    modified = datetime.fromisoformat(listed["modified_at"].replace("Z", "+00:00"))
    assert abs(modified.timestamp() - stat.st_mtime) < 1e-3
    assert listed["size"] == stat.st_size
    assert listed["digest"] == hashlib.sha256(engine.model_path.read_bytes()).hexdigest()
    assert listed["details"]["parameter_size"] == "135M"


def test_every_contract_option_reaches_llama_cpp() -> None:
    contract = set(get_type_hints(GenerationOptions))
    assert contract <= set(SAMPLING) | APPLIED_APART, contract - set(SAMPLING) - APPLIED_APART


def test_penalties_reach_llama_cpp(engine: LlamaEngine) -> None:
    # Called on the engine: the penalties join the request contract on the gateway's side.
    def answer(**options: object) -> str:
        events = engine.generate(
            [{"role": "user", "content": "Repeat the word cat ten times."}],
            cast(GenerationOptions, {"num_predict": 24, "temperature": 0, **options}),
            None,
            threading.Event(),
        )
        return "".join(e for e in events if isinstance(e, str))

    plain = answer()
    assert plain == answer()
    assert answer(frequency_penalty=2.0) != plain
    assert answer(presence_penalty=2.0) != plain

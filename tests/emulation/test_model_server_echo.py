"""The local model server's Ollama shapes, with the deterministic echo engine, in-process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import get_type_hints

import httpx
import pytest
from servicekit.generation import GenerationOptions

from local.ollama.echo_engine import ECHO_DIMENSIONS, EchoEngine
from local.ollama.requests import OPTION_CHECKS
from local.ollama.server import create_app

NS_FIELDS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
FINAL_FIELDS = {"model", "created_at", "done", "done_reason", "prompt_eval_count", "eval_count", *NS_FIELDS}


@pytest.fixture
async def ollama() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(EchoEngine(name="echo"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ollama.test") as client:
        yield client


def _check_final(final: dict[str, object]) -> None:
    assert set(final) >= FINAL_FIELDS
    assert final["done"] is True
    for name in NS_FIELDS:
        assert isinstance(final[name], int)
        assert final[name] >= 0  # type: ignore[operator]
    assert str(final["created_at"]).endswith("Z")


async def test_root_and_version(ollama: httpx.AsyncClient) -> None:
    root = await ollama.get("/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    version = await ollama.get("/api/version")
    assert version.json() == {"version": "0.9.0-local"}


async def test_generate_without_stream(ollama: httpx.AsyncClient) -> None:
    response = await ollama.post("/api/generate", json={"model": "echo", "prompt": "the sky is blue", "stream": False})
    assert response.status_code == 200
    body = response.json()
    assert body["response"] == "the sky is blue "
    assert body["model"] == "echo"
    assert body["done_reason"] == "stop"
    assert body["prompt_eval_count"] == 4
    assert body["eval_count"] == 4
    _check_final(body)


async def test_generate_streams_ndjson_by_default(ollama: httpx.AsyncClient) -> None:
    response = await ollama.post("/api/generate", json={"model": "echo", "prompt": "a b c"})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["response"] for line in lines] == ["a ", "b ", "c ", ""]
    assert [line["done"] for line in lines] == [False, False, False, True]
    _check_final(lines[-1])


async def test_chat_with_and_without_stream(ollama: httpx.AsyncClient) -> None:
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello you"}]
    whole = (await ollama.post("/api/chat", json={"model": "echo", "messages": messages, "stream": False})).json()
    assert whole["message"] == {"role": "assistant", "content": "hello you "}
    assert whole["prompt_eval_count"] == 4
    _check_final(whole)
    streamed = await ollama.post("/api/chat", json={"model": "echo", "messages": messages})
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert [line["message"]["content"] for line in lines] == ["hello ", "you ", ""]


async def test_num_predict_caps_the_tokens(ollama: httpx.AsyncClient) -> None:
    body = {"model": "echo", "prompt": "one two three four", "stream": False, "options": {"num_predict": 2}}
    reply = (await ollama.post("/api/generate", json=body)).json()
    assert (reply["response"], reply["eval_count"], reply["done_reason"]) == ("one two ", 2, "length")


async def test_empty_prompt_loads_the_model(ollama: httpx.AsyncClient) -> None:
    assert (await ollama.get("/api/ps")).json() == {"models": []}
    reply = (await ollama.post("/api/generate", json={"model": "echo"})).json()
    assert reply["done"] is True
    assert reply["done_reason"] == "load"
    loaded = (await ollama.get("/api/ps")).json()["models"]
    assert [m["name"] for m in loaded] == ["echo"]
    assert {"expires_at", "size_vram", "digest", "details"} <= set(loaded[0])


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/show"])
async def test_unknown_model_is_404_in_ollamas_words(ollama: httpx.AsyncClient, path: str) -> None:
    response = await ollama.post(path, json={"model": "llama9", "prompt": "x", "messages": []})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'llama9' not found"}


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b"[]",
        b'{"prompt": "x"}',
        b'{"model": "echo", "messages": "hi"}',
        b'{"model": "echo", "prompt": 1}',
        b'{"model": "echo", "prompt": "x", "options": {"seed": "x"}}',
    ],
)
async def test_bad_bodies_are_400(ollama: httpx.AsyncClient, body: bytes) -> None:
    path = "/api/chat" if b"messages" in body else "/api/generate"
    response = await ollama.post(path, content=body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


async def test_tags_and_show(ollama: httpx.AsyncClient) -> None:
    tags = (await ollama.get("/api/tags")).json()
    assert [m["name"] for m in tags["models"]] == ["echo"]
    assert {"model", "modified_at", "size", "digest", "details"} <= set(tags["models"][0])
    assert tags["models"][0]["details"]["format"] == "gguf"
    assert len(tags["models"][0]["digest"]) == 64
    again = (await ollama.get("/api/tags")).json()
    assert again["models"][0]["modified_at"] == tags["models"][0]["modified_at"]  # not "now" on every call
    show = (await ollama.post("/api/show", json={"model": "echo"})).json()
    assert {"modelfile", "parameters", "template", "details", "model_info", "capabilities", "modified_at"} <= set(show)
    assert show["modified_at"] == tags["models"][0]["modified_at"]


async def test_pull_streams_status_until_success(ollama: httpx.AsyncClient) -> None:
    pulled = await ollama.post("/api/pull", json={"model": "echo"})
    statuses = [json.loads(line)["status"] for line in pulled.text.splitlines()]
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    quiet = await ollama.post("/api/pull", json={"model": "echo", "stream": False})
    assert quiet.json() == {"status": "success"}
    missing = await ollama.post("/api/pull", json={"model": "llama9"})
    assert [json.loads(line) for line in missing.text.splitlines()] == [
        {"error": "pull model manifest: file does not exist"}
    ]


async def test_tokens_are_whitespace_pieces(ollama: httpx.AsyncClient) -> None:
    body = {"model": "echo", "prompt": "🐶🐱 🐭  🐹\tend", "stream": False}
    reply = (await ollama.post("/api/generate", json=body)).json()
    assert reply["response"] == "🐶🐱 🐭 🐹 end "
    assert (reply["eval_count"], reply["prompt_eval_count"]) == (4, 4)


async def test_format_json_answers_a_json_echo(ollama: httpx.AsyncClient) -> None:
    body = {"model": "echo", "prompt": "the sky is blue", "format": "json", "stream": False}
    reply = (await ollama.post("/api/generate", json=body)).json()
    assert json.loads(reply["response"]) == {"echo": "the sky is blue"}
    assert reply["eval_count"] == len(reply["response"].split())
    streamed = await ollama.post("/api/chat", json={**body, "messages": [{"role": "user", "content": "a b"}]})
    pieces = [json.loads(line)["message"]["content"] for line in streamed.text.splitlines()]
    assert json.loads("".join(pieces)) == {"echo": "a b"}


async def test_format_schema_answers_a_value_matching_it(ollama: httpx.AsyncClient) -> None:
    import jsonschema

    schema = {
        "type": "object",
        "properties": {
            "age": {"type": "integer"},
            "available": {"type": "boolean"},
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"enum": ["x", "y"]}},
            "score": {"type": ["number", "null"]},
        },
        "required": ["age", "available"],
    }
    body = {"model": "echo", "prompt": "Ollama is 22", "format": schema, "stream": False}
    answer = json.loads((await ollama.post("/api/generate", json=body)).json()["response"])
    jsonschema.validate(answer, schema)
    assert answer == {"age": 3, "available": True, "name": "Ollama is 22", "tags": ["x"], "score": 3.0}


@pytest.mark.parametrize("fmt", ["yaml", 3, ["json"]])
async def test_an_unknown_format_is_400(ollama: httpx.AsyncClient, fmt: object) -> None:
    response = await ollama.post("/api/generate", json={"model": "echo", "prompt": "x", "format": fmt})
    assert response.status_code == 400
    assert "format" in response.json()["error"]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embed_answers_normalized_deterministic_vectors(ollama: httpx.AsyncClient) -> None:
    texts = ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew"]
    reply = (await ollama.post("/api/embed", json={"model": "echo", "input": texts})).json()
    assert set(reply) == {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
    assert reply["model"] == "echo"
    assert reply["prompt_eval_count"] == 6 + 6 + 3
    cat, cat2, revenue = reply["embeddings"]
    assert len(cat) == ECHO_DIMENSIONS
    assert abs(_cosine(cat, cat) - 1) < 1e-9
    assert _cosine(cat, cat2) > _cosine(cat, revenue)
    again = (await ollama.post("/api/embed", json={"model": "echo", "input": "the cat sat on the mat"})).json()
    assert again["embeddings"] == [cat]


async def test_legacy_embeddings_answer_one_raw_vector(ollama: httpx.AsyncClient) -> None:
    reply = (await ollama.post("/api/embeddings", json={"model": "echo", "prompt": "cat cat"})).json()
    assert set(reply) == {"embedding"}
    assert len(reply["embedding"]) == ECHO_DIMENSIONS
    assert sorted(abs(x) for x in reply["embedding"])[-1] == 2.0  # not normalized, as Ollama's legacy route
    empty = (await ollama.post("/api/embeddings", json={"model": "echo", "prompt": ""})).json()
    assert empty == {"embedding": []}


async def test_embed_without_input_loads_the_model(ollama: httpx.AsyncClient) -> None:
    reply = (await ollama.post("/api/embed", json={"model": "echo"})).json()
    assert reply["embeddings"] == []
    assert [m["name"] for m in (await ollama.get("/api/ps")).json()["models"]] == ["echo"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "echo", "input": 3},
        {"model": "echo", "input": ["a", 1]},
        {"input": "a"},
        {"model": "echo", "input": "a", "truncate": 1},
        {"model": "echo", "input": " ".join(["w"] * 2049), "truncate": False},
    ],
)
async def test_bad_embed_requests_are_400(ollama: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await ollama.post("/api/embed", json=body)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)


async def test_embed_of_an_unknown_model_is_404(ollama: httpx.AsyncClient) -> None:
    response = await ollama.post("/api/embed", json={"model": "llama9", "input": "x"})
    assert (response.status_code, response.json()) == (404, {"error": "model 'llama9' not found"})


async def test_keep_alive_sets_expiry_and_zero_unloads(ollama: httpx.AsyncClient) -> None:
    await ollama.post("/api/generate", json={"model": "echo", "prompt": "x", "keep_alive": "1h", "stream": False})
    (loaded,) = (await ollama.get("/api/ps")).json()["models"]
    expires = datetime.fromisoformat(loaded["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    await ollama.post("/api/generate", json={"model": "echo", "prompt": "x", "keep_alive": 0, "stream": False})
    assert (await ollama.get("/api/ps")).json() == {"models": []}  # expired at once: unloaded
    await ollama.post("/api/generate", json={"model": "echo", "keep_alive": -1})
    (forever,) = (await ollama.get("/api/ps")).json()["models"]
    assert forever["expires_at"].startswith("2318-")
    unloaded = (await ollama.post("/api/chat", json={"model": "echo", "messages": [], "keep_alive": 0})).json()
    assert unloaded["done_reason"] == "unload"
    assert (await ollama.get("/api/ps")).json() == {"models": []}


@pytest.mark.parametrize("keep_alive", ["soon", [1], "5x"])
async def test_a_bad_keep_alive_is_400(ollama: httpx.AsyncClient, keep_alive: object) -> None:
    response = await ollama.post("/api/generate", json={"model": "echo", "prompt": "x", "keep_alive": keep_alive})
    assert response.status_code == 400


def test_every_contract_option_is_checked_by_type() -> None:
    assert set(OPTION_CHECKS) == set(get_type_hints(GenerationOptions))
    accepted = [("temperature", 0.5), ("temperature", 1), ("seed", 3), ("stop", ["a"])]
    refused = [("temperature", True), ("temperature", "1"), ("seed", 3.5), ("stop", ["a", 1]), ("stop", "a")]
    assert [OPTION_CHECKS[name](value) for name, value in accepted] == [True] * len(accepted)
    assert [OPTION_CHECKS[name](value) for name, value in refused] == [False] * len(refused)

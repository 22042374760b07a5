"""The local model server's Ollama shapes, with the deterministic echo engine, in-process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from local.ollama.echo_engine import EchoEngine
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
    [b"{nope", b"[]", b'{"prompt": "x"}', b'{"model": "echo", "messages": "hi"}',
     b'{"model": "echo", "prompt": 1}', b'{"model": "echo", "prompt": "x", "options": {"seed": "x"}}'],
)  # fmt: skip
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
    show = (await ollama.post("/api/show", json={"model": "echo"})).json()
    assert {"modelfile", "parameters", "template", "details", "model_info", "capabilities"} <= set(show)


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

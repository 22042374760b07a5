"""The official ``ollama`` client against chat (in-process): every route it uses, streamed and not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import ollama
import pytest
from runner.settings import Settings as RunnerSettings
from starlette.applications import Starlette

from tests.conftest import runner_app_for
from tests.dialects.conftest import chat_app_over, ollama_client
from tests.fake_ollama import FakeOllama


async def test_list_shows_the_allowed_models_ollama_has(
    fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: Any
) -> None:
    fake.models = {"tinyllama", "llama3.2", "secret-model"}
    allowed = ("tinyllama", "llama3.2:latest", "not-pulled")
    async with chat_app_over(runner_app_for(fake, runner_settings), chat_settings, allowed_models=allowed) as app:
        listed = await ollama_client(app).list()
    # Allowed and present; "secret-model" is not allowed, "not-pulled" is not in Ollama.
    assert sorted(m.model or "" for m in listed.models) == ["llama3.2:latest", "tinyllama:latest"]
    assert listed.models[0].details is not None
    assert listed.models[0].details.family == "llama"


async def test_chat_whole(ollama_chat: ollama.AsyncClient, fake: FakeOllama) -> None:
    reply = await ollama_chat.chat(
        model="tinyllama", messages=[{"role": "user", "content": "hello there"}], options={"temperature": 0.1}
    )
    assert reply.message.role == "assistant"
    assert reply.message.content == "hello there hello "
    assert (reply.done, reply.done_reason, reply.model) == (True, "stop", "tinyllama")
    assert (reply.prompt_eval_count, reply.eval_count) == (7, 3)
    assert reply.eval_duration
    assert reply.eval_duration > 0
    assert reply.total_duration
    sent = fake.recorder.bodies[0]
    # Streamed from Ollama even for a whole reply: the runner gathers it (a dropped request stops at once).
    assert (sent["path"], sent["stream"], sent["options"]) == ("/api/chat", True, {"temperature": 0.1})


async def test_chat_streamed(ollama_chat: ollama.AsyncClient, fake: FakeOllama) -> None:
    parts = [
        p
        async for p in await ollama_chat.chat(
            model="tinyllama:latest", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
    ]
    assert [p.message.content for p in parts] == ["one ", "two ", "three ", ""]
    assert [p.done for p in parts] == [False, False, False, True]
    assert parts[-1].done_reason == "stop"
    assert parts[-1].eval_count == 3
    assert {p.model for p in parts} == {"tinyllama:latest"}  # echoes the name asked for, as Ollama does
    assert fake.recorder.bodies[0]["model"] == "tinyllama"  # forwarded under the allowed spelling


async def test_generate_whole_and_streamed(ollama_chat: ollama.AsyncClient, fake: FakeOllama) -> None:
    whole = await ollama_chat.generate(model="tinyllama", prompt="a b c", system="Be brief.")
    assert (whole.response, whole.done) == ("a b c ", True)
    parts = [p async for p in await ollama_chat.generate(model="tinyllama", prompt="a b c", stream=True)]
    assert [p.response for p in parts] == ["a ", "b ", "c ", ""]
    assert parts[-1].done
    assert parts[-1].prompt_eval_count == 7
    assert [b["path"] for b in fake.recorder.bodies] == ["/api/generate", "/api/generate"]
    assert fake.recorder.bodies[0]["system"] == "Be brief."


async def test_stream_is_the_default_as_in_ollama(chat_app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(chat_app), base_url="http://chat.test") as client:
        response = await client.post("/api/generate", json={"model": "tinyllama", "prompt": "x y"})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["done"] for line in lines] == [False, False, False, True]


async def test_json_format_and_schema(ollama_chat: ollama.AsyncClient, fake: FakeOllama) -> None:
    reply = await ollama_chat.chat(model="tinyllama", messages=[{"role": "user", "content": "q"}], format="json")
    assert json.loads(reply.message.content or "") == {"answer": "q"}
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    parts = [p async for p in await ollama_chat.generate(model="tinyllama", prompt="p", format=schema, stream=True)]
    assert json.loads("".join(p.response or "" for p in parts)) == {"answer": "p"}
    assert [b["format"] for b in fake.recorder.bodies] == ["json", schema]


async def test_think_and_tools_are_passed_through(ollama_chat: ollama.AsyncClient, fake: FakeOllama) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    reply = await ollama_chat.chat(
        model="tinyllama", messages=[{"role": "user", "content": "weather?"}], tools=[tool], think=True
    )
    assert reply.message.thinking == "Let me think. "
    assert reply.message.tool_calls is not None
    assert reply.message.tool_calls[0].function.name == "weather"
    assert reply.message.tool_calls[0].function.arguments == {"city": "Paris"}
    streamed = await ollama_chat.chat(
        model="tinyllama", messages=[{"role": "user", "content": "w"}], tools=[tool], think=True, stream=True
    )
    parts = [p async for p in streamed]
    assert parts[0].message.thinking == "Let me think. "
    assert any(p.message.tool_calls for p in parts)
    assert fake.recorder.bodies[0]["think"] is True
    assert fake.recorder.bodies[0]["tools"][0]["function"]["name"] == "weather"


async def test_embed_and_the_older_embeddings(ollama_chat: ollama.AsyncClient, fake: FakeOllama) -> None:
    embedded = await ollama_chat.embed(model="tinyllama", input=["first text", "second"])
    assert len(embedded.embeddings) == 2
    assert len(embedded.embeddings[0]) == 4
    assert embedded.prompt_eval_count == 3
    single = await ollama_chat.embed(model="tinyllama", input="first text")
    assert single.embeddings == embedded.embeddings[:1]
    older = await ollama_chat.embeddings(model="tinyllama", prompt="first text")
    assert list(older.embedding) == embedded.embeddings[0]
    assert [b["path"] for b in fake.recorder.bodies] == ["/api/embed"] * 3


async def test_show_ps_version_and_root(ollama_chat: ollama.AsyncClient, chat_app: Starlette) -> None:
    shown = await ollama_chat.show("tinyllama")
    assert shown.capabilities == ["completion"]
    assert shown.details is not None
    assert [m.model for m in (await ollama_chat.ps()).models] == ["tinyllama:latest"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(chat_app), base_url="http://chat.test") as client:
        assert (await client.get("/api/version")).json() == {"version": "0.0.0-fake"}
        root = await client.get("/")
        head = await client.head("/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert (head.status_code, head.content) == (200, b"")


async def test_unknown_model_is_response_error_404(ollama_chat: ollama.AsyncClient, fake: FakeOllama) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        await ollama_chat.chat(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 404
    assert "gpt-9" in refused.value.error
    with pytest.raises(ollama.ResponseError) as streamed:
        async for _ in await ollama_chat.generate(model="gpt-9", prompt="x", stream=True):
            pass
    assert streamed.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as shown:
        await ollama_chat.show("gpt-9")
    assert shown.value.status_code == 404
    assert fake.recorder.bodies == []


async def test_allowed_but_missing_in_ollama_is_404_too(
    fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: Any
) -> None:
    async with chat_app_over(
        runner_app_for(fake, runner_settings), chat_settings, allowed_models=("tinyllama", "not-pulled")
    ) as app:
        client = ollama_client(app)
        with pytest.raises(ollama.ResponseError) as refused:
            await client.generate(model="not-pulled", prompt="x")
        with pytest.raises(ollama.ResponseError) as shown:
            await client.show("not-pulled")
    assert (refused.value.status_code, shown.value.status_code) == (404, 404)


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (lambda c: c.pull("tinyllama"), "/api/pull"),
        (lambda c: c.push("tinyllama"), "/api/push"),
        (lambda c: c.create("mine", from_="tinyllama"), "/api/create"),
        (lambda c: c.copy("tinyllama", "mine"), "/api/copy"),
        (lambda c: c.delete("tinyllama"), "/api/delete"),
    ],
)
async def test_management_is_refused(ollama_chat: ollama.AsyncClient, fake: FakeOllama, call: Any, path: str) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        await call(ollama_chat)
    assert refused.value.status_code == 403
    assert path in refused.value.error
    assert "operator" in refused.value.error


async def test_blobs_are_refused(chat_app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(chat_app), base_url="http://chat.test") as client:
        for method in ("HEAD", "POST"):
            response = await client.request(method, "/api/blobs/sha256:" + "0" * 64)
            assert response.status_code == 403


async def test_refused_parameters_name_themselves(ollama_chat: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        await ollama_chat.generate(model="tinyllama", prompt="x", raw=True)
    assert (refused.value.status_code, refused.value.error) == (400, "'raw' is not offered by this gateway.")
    with pytest.raises(ollama.ResponseError) as bad_option:
        await ollama_chat.generate(model="tinyllama", prompt="x", options={"num_gpu": 1})
    assert bad_option.value.status_code == 422
    assert "num_gpu" in bad_option.value.error


async def test_an_error_mid_stream_is_raised_by_the_client(ollama_chat: ollama.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.error_line_after_tokens = 1
    with pytest.raises(ollama.ResponseError) as failed:
        async for _ in await ollama_chat.chat(
            model="tinyllama", messages=[{"role": "user", "content": "a b"}], stream=True
        ):
            pass
    assert "injected error line" in failed.value.error


async def test_null_options_and_empty_format_are_not_set(chat_app: Starlette, fake: FakeOllama) -> None:
    # As Ollama reads them; LangChain's Ollama classes send every option they know, mostly null.
    body = {
        "model": "tinyllama",
        "prompt": "x",
        "stream": False,
        "format": "",
        "options": {"temperature": 0.5, "mirostat": None, "num_gpu": None},
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(chat_app), base_url="http://chat.test") as client:
        response = await client.post("/api/generate", json=body)
        refused = await client.post("/api/generate", json={**body, "options": {"num_gpu": 1}})
    assert response.status_code == 200
    assert fake.recorder.bodies[0]["options"] == {"temperature": 0.5}
    assert "format" not in fake.recorder.bodies[0]
    assert refused.status_code == 422

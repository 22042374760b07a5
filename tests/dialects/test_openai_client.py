"""The official ``openai`` client against chat (in-process): every route it uses, streamed and not."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)
from runner.settings import Settings as RunnerSettings

from tests.conftest import runner_app_for
from tests.dialects.conftest import chat_app_over, openai_client
from tests.fake_ollama import FakeOllama

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


async def test_models_list_and_retrieve(
    fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: Any, api_key: str
) -> None:
    fake.models = {"tinyllama", "secret-model"}
    async with (
        chat_app_over(runner_app_for(fake, runner_settings), chat_settings) as app,
        openai_client(app, api_key) as client,
    ):
        listed = [model.id async for model in client.models.list()]
        one = await client.models.retrieve("tinyllama")
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("secret-model")
    assert listed == ["tinyllama:latest"]
    assert (one.id, one.object, one.owned_by) == ("tinyllama", "model", "library")
    assert one.created == 1767225600  # Ollama's modified_at
    assert missing.value.status_code == 404


async def test_chat_completion_whole(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    completion = await openai_chat.chat.completions.create(
        model="tinyllama",
        messages=[{"role": "system", "content": "Be brief."}, *USER],
        max_tokens=8,
        temperature=0.2,
        top_p=0.9,
        stop=["\n"],
        seed=42,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "hello there hello "
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        7,
        3,
        10,
    )
    sent = fake.recorder.bodies[0]
    assert sent["path"] == "/api/chat"
    assert sent["stream"] is True  # always streamed from Ollama; the runner gathers the whole reply
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 42,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "num_predict": 8,
        "stop": ["\n"],
    }


async def test_chat_completion_streamed_with_usage(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    stream = await openai_chat.chat.completions.create(
        model="tinyllama",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=5,
    )
    chunks = [chunk async for chunk in stream]
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(texts) == "hello there hello "
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 10
    assert fake.recorder.bodies[0]["options"] == {"num_predict": 5}


async def test_finish_reason_length_comes_from_done_reason(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    fake.faults.done_reason = "length"
    whole = await openai_chat.chat.completions.create(model="tinyllama", messages=USER, max_tokens=3)
    assert whole.choices[0].finish_reason == "length"
    stream = await openai_chat.chat.completions.create(model="tinyllama", messages=USER, stream=True)
    reasons = [c.choices[0].finish_reason async for c in stream if c.choices and c.choices[0].finish_reason]
    assert reasons == ["length"]


async def test_completions_whole_and_streamed(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    whole = await openai_chat.completions.create(model="tinyllama", prompt="a b c", max_tokens=4)
    assert (whole.object, whole.choices[0].text, whole.choices[0].finish_reason) == (
        "text_completion",
        "a b c ",
        "stop",
    )
    stream = await openai_chat.completions.create(model="tinyllama", prompt="a b c", stream=True)
    assert "".join([c.choices[0].text async for c in stream if c.choices]) == "a b c "
    assert [b["path"] for b in fake.recorder.bodies] == ["/api/generate", "/api/generate"]


async def test_json_object_and_json_schema(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    as_json = await openai_chat.chat.completions.create(
        model="tinyllama",
        messages=USER,
        response_format={"type": "json_object"},
    )
    assert json.loads(as_json.choices[0].message.content or "") == {"answer": "hello there"}
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    await openai_chat.chat.completions.create(
        model="tinyllama",
        messages=USER,
        response_format=response_format,
    )
    assert [b["format"] for b in fake.recorder.bodies] == ["json", schema]


async def test_tools_and_tool_results(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    tool: ChatCompletionToolParam = {
        "type": "function",
        "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
    }
    called = await openai_chat.chat.completions.create(model="tinyllama", messages=USER, tools=[tool])
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert (call.function.name, json.loads(call.function.arguments)) == ("weather", {"city": "Paris"})
    # The tool's answer goes back with the call; Ollama gets arguments as an object and the tool's name.
    history: list[Any] = [
        *USER,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    await openai_chat.chat.completions.create(model="tinyllama", messages=history)
    sent = fake.recorder.bodies[1]["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_name": "weather"}


async def test_embeddings_base64_by_default_and_float(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    # The client asks for base64 unless told otherwise, and decodes it itself.
    default = await openai_chat.embeddings.create(model="tinyllama", input=["first text", "second"])
    floats = await openai_chat.embeddings.create(model="tinyllama", input="first text", encoding_format="float")
    assert len(default.data) == 2
    assert [d.index for d in default.data] == [0, 1]
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert default.usage.prompt_tokens == 3
    assert [b["path"] for b in fake.recorder.bodies] == ["/api/embed", "/api/embed"]


async def test_unknown_model_is_not_found(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        await openai_chat.chat.completions.create(model="gpt-9", messages=USER)
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["type"], error["param"]) == ("model_not_found", "invalid_request_error", None)
    with pytest.raises(openai.NotFoundError):
        await openai_chat.chat.completions.create(model="gpt-9", messages=USER, stream=True)
    assert fake.recorder.bodies == []


async def test_n_above_one_is_400_naming_it(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await openai_chat.chat.completions.create(model="tinyllama", messages=USER, n=2)
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == ("n", "unsupported_parameter")
    assert "one generation at a time" in error["message"]
    assert fake.recorder.bodies == []


async def test_an_error_mid_stream_is_raised_by_the_client(openai_chat: openai.AsyncOpenAI, fake: FakeOllama) -> None:
    fake.faults.error_line_after_tokens = 1
    stream = await openai_chat.chat.completions.create(model="tinyllama", messages=USER, stream=True)
    with pytest.raises(openai.APIError, match="injected error line"):
        async for _ in stream:
            pass

"""The official clients against real processes on loopback: chat and the runner under uvicorn, as in the README."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import ollama
import openai
import pytest
from servicekit.state.factory import StateSettings

from tests.dialects.conftest import add_key
from tests.fake_ollama import FakeOllama
from tests.servers import serve_in_thread, uvicorn_process
from tests.waiting import until

pytestmark = pytest.mark.slow


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture
def key(tmp_path: Path) -> str:
    """A key in chat's state: the openai client always sends one, and chat checks any it is sent."""
    return asyncio.run(add_key(StateSettings(directory=str(tmp_path / "state"))))


@pytest.fixture
def chat_url(fake: FakeOllama, tmp_path: Path, key: str) -> Iterator[str]:
    """Fake Ollama (a thread) → runner (a process, MAX_QUEUE=1) → chat (a process)."""
    runner_env = {
        "OLLAMA_HOST": "",
        "LOCK_PATH": str(tmp_path / "r.lock"),
        "MAX_QUEUE": "1",
        "GENERATION_ESTIMATE_S": "1",
        "STATE_DIR": str(tmp_path / "state"),
    }
    with serve_in_thread(fake.app) as ollama_url:
        runner_env["OLLAMA_HOST"] = ollama_url
        with (
            uvicorn_process("runner", "runner.app:app", runner_env) as (runner_url, _),
            uvicorn_process(
                "chat", "chat.app:app", {"RUNNER_URL": runner_url, "STATE_DIR": str(tmp_path / "state"), "AUTH": "off"}
            ) as (
                url,
                _,
            ),
        ):
            yield url


def test_ollama_client(chat_url: str, fake: FakeOllama) -> None:
    client = ollama.Client(host=chat_url)
    assert [m.model for m in client.list().models] == ["tinyllama:latest"]
    parts = list(client.chat(model="tinyllama", messages=[{"role": "user", "content": "a b"}], stream=True))
    assert "".join(p.message.content or "" for p in parts) == "a b a "
    assert parts[-1].done
    assert client.generate(model="tinyllama", prompt="x y").response == "x y x "
    assert len(client.embed(model="tinyllama", input=["one", "two"]).embeddings) == 2
    with pytest.raises(ollama.ResponseError) as unknown:
        client.chat(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as pull:
        client.pull("tinyllama")
    assert pull.value.status_code == 403
    assert fake.recorder.peak == 1


def test_openai_client(chat_url: str, key: str) -> None:
    client = openai.OpenAI(base_url=f"{chat_url}/v1", api_key=key)
    assert [m.id for m in client.models.list()] == ["tinyllama:latest"]
    stream = client.chat.completions.create(
        model="tinyllama",
        messages=[{"role": "user", "content": "a b"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b a "
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert client.completions.create(model="tinyllama", prompt="x y").choices[0].text == "x y x "
    assert len(client.embeddings.create(model="tinyllama", input="one").data[0].embedding) == 4
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])


def _fill_the_queue(chat_url: str, fake: FakeOllama) -> list[threading.Thread]:
    """One generation holding the slot (~1.2 s), one waiting: MAX_QUEUE=1 is reached."""
    fake.faults.token_delay_s = 0.4
    threads = [
        threading.Thread(target=httpx.post, args=(f"{chat_url}/chat",), kwargs={"json": {"prompt": p}, "timeout": 30})
        for p in ("holder", "waiter")
    ]
    holder, waiter = threads
    holder.start()
    until(lambda: fake.recorder.active == 1, what="the holder's generation")
    waiter.start()
    # The waiter is queued once the runner reports it.
    until(lambda: httpx.get(f"{chat_url}/readyz").json()["runner"].get("queue_depth") == 1, what="the waiter queued")
    return threads


def test_full_queue_openai_retries_after_our_retry_after(chat_url: str, fake: FakeOllama, key: str) -> None:
    seen: list[tuple[float, int, str | None]] = []

    def record(response: httpx2.Response) -> None:
        seen.append((time.monotonic(), response.status_code, response.headers.get("retry-after")))

    threads = _fill_the_queue(chat_url, fake)
    http_client = httpx2.Client(event_hooks={"response": [record]})
    client = openai.OpenAI(base_url=f"{chat_url}/v1", api_key=key, http_client=http_client, max_retries=3)
    completion = client.chat.completions.create(model="tinyllama", messages=[{"role": "user", "content": "me"}])
    for thread in threads:
        thread.join()
    assert completion.choices[0].message.content == "me me me "
    first: Any = seen[0]
    assert first[1] == 503
    retry_after = int(first[2])
    # Whole seconds, from the queue's ETA (this model's recent generations, host-wide): at least 1 s,
    # longer than the client's own first backoff (at most 0.5 s).
    assert retry_after >= 1
    assert seen[1][0] - first[0] >= retry_after
    assert seen[-1][1] == 200
    assert fake.recorder.peak == 1


def test_full_queue_is_ollama_response_error_503(chat_url: str, fake: FakeOllama) -> None:
    threads = _fill_the_queue(chat_url, fake)
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=chat_url).generate(model="tinyllama", prompt="me")
    for thread in threads:
        thread.join()
    assert refused.value.status_code == 503
    assert "me" not in fake.recorder.prompts


def test_langchain_chat_ollama_and_chat_openai(chat_url: str, key: str) -> None:
    from langchain_ollama import ChatOllama, OllamaEmbeddings
    from langchain_openai import ChatOpenAI

    ollama_chat = ChatOllama(model="tinyllama", base_url=chat_url)
    assert ollama_chat.invoke("a b").content == "a b a "
    assert "".join(str(chunk.content) for chunk in ollama_chat.stream("a b")) == "a b a "
    assert len(OllamaEmbeddings(model="tinyllama", base_url=chat_url).embed_query("a b")) == 4
    openai_chat = ChatOpenAI(model="tinyllama", base_url=f"{chat_url}/v1", api_key=key)  # type: ignore[arg-type]
    assert openai_chat.invoke("a b").content == "a b a "
    assert "".join(str(chunk.content) for chunk in openai_chat.stream("a b")) == "a b a "

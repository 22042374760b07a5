"""Every upstream failure becomes a clear error, never a 200: Ollama's through the runner, the runner's through chat."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from starlette.types import Receive, Scope, Send

from tests.conftest import runner_app_for
from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient, answering
from tests.servers import free_port, serve_in_thread


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    return error


async def test_unknown_model_at_ollama_is_404(
    fake: FakeOllama, runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    fake.models = {"other"}
    async with make_chat(runner_app_for(fake, runner_settings)) as client:
        response = await client.post("/chat", json={"prompt": "hi"})
    assert response.status_code == 404
    error = _error(response)
    assert error["code"] == "model_not_found"
    assert "tinyllama" in str(error["message"])


@pytest.mark.parametrize("stream", [False, True])
async def test_ollama_failure_is_502_with_ollamas_message(
    chat_client: httpx.AsyncClient, fake: FakeOllama, stream: bool
) -> None:
    fake.faults.fail_status = 500
    response = await chat_client.post("/chat", json={"prompt": "hi", "stream": stream})
    if stream:
        # A stream's status line goes out before its turn comes: the failure is its last line.
        assert response.status_code == 200
        error = json.loads(response.text.splitlines()[-1])["error"]
    else:
        assert response.status_code == 502
        error = _error(response)
    assert error["code"] == "upstream_error"
    assert "injected failure" in str(error["message"])


async def test_error_line_mid_stream_ends_the_stream_with_an_error(
    chat_client: httpx.AsyncClient, fake: FakeOllama
) -> None:
    fake.faults.error_line_after_tokens = 2
    response = await chat_client.post("/chat", json={"prompt": "a b c", "stream": True})
    assert response.status_code == 200  # the status line was sent with the first chunk
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[:2] == [{"response": "a "}, {"response": "b "}]
    assert lines[2]["error"]["code"] == "upstream_error"
    assert "injected error line" in lines[2]["error"]["message"]
    assert len(lines) == 3


async def test_ollama_unreachable_is_a_fast_502(
    runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    settings = dataclasses.replace(runner_settings, ollama_url=f"http://127.0.0.1:{free_port()}")
    async with make_chat(create_runner_app(settings)) as client:
        started = time.perf_counter()
        response = await client.post("/chat", json={"prompt": "hi"})
        elapsed = time.perf_counter() - started
        assert response.status_code == 502
        assert _error(response)["code"] == "upstream_unavailable"
        assert elapsed < 1.0
        # the slot was released: the next request fails the same way instead of queueing
        again = await client.post("/chat", json={"prompt": "hi"})
        assert again.status_code == 502


async def test_ollama_stall_is_504_at_the_deadline(
    fake: FakeOllama, runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    # httpx timeouts apply to sockets, not to ASGITransport: Ollama must be a real server here.
    fake.faults.stall = True
    with serve_in_thread(fake.app) as ollama_url:
        settings = dataclasses.replace(runner_settings, ollama_url=ollama_url, ollama_timeout_s=0.3)
        async with make_chat(create_runner_app(settings)) as client:
            started = time.perf_counter()
            response = await client.post("/chat", json={"prompt": "hi"})
            elapsed = time.perf_counter() - started
    assert response.status_code == 504
    assert _error(response)["code"] == "upstream_timeout"
    assert 0.3 <= elapsed < 2.0


async def test_runner_unreachable_is_502(fake: FakeOllama) -> None:
    settings = ChatSettings(runner_url=f"http://127.0.0.1:{free_port()}", auth="off")
    app = create_chat_app(settings)
    async with AppClient(app, base_url="http://chat.test") as client:
        started = time.perf_counter()
        response = await client.post("/chat", json={"prompt": "hi"})
        assert time.perf_counter() - started < 1.0
        ready = await client.get("/readyz")
    assert response.status_code == 502
    assert _error(response)["code"] == "upstream_unavailable"
    assert ready.status_code == 503
    assert _error(ready)["code"] == "not_ready"


async def test_runner_that_answers_garbage_is_502(make_chat: Callable[..., httpx.AsyncClient]) -> None:
    async with make_chat(answering(500, b"text/plain", b"Internal Server Error")) as client:
        response = await client.post("/chat", json={"prompt": "hi"})
    assert response.status_code == 502
    assert _error(response)["code"] == "upstream_error"


@pytest.mark.parametrize(("body", "refused"), [(b"Internal", "not JSON"), (b"[1, 2]", "not a JSON object")])
async def test_runner_that_answers_200_with_no_json_object_is_502(
    make_chat: Callable[..., httpx.AsyncClient], body: bytes, refused: str
) -> None:
    async with make_chat(answering(200, b"application/json", body)) as client:
        response = await client.post("/chat", json={"prompt": "hi"})
    assert response.status_code == 502
    error = _error(response)
    assert error["code"] == "upstream_error"
    assert str(error["message"]) == f"The runner answered with something that is {refused}."


# What a runner's stream may do wrong after its first chunk, and what the client is told.
BROKEN_RUNNER_STREAMS = [
    ([b"Internal\n"], "The runner sent a line that is not JSON."),
    ([b"[1, 2]\n"], "The runner sent a line that is not a JSON object."),
    ([], "The runner ended the stream before the generation was done."),
]


@pytest.mark.parametrize(("tail", "message"), BROKEN_RUNNER_STREAMS)
async def test_a_broken_runner_stream_ends_an_ollama_stream_with_its_error(
    make_chat: Callable[..., httpx.AsyncClient], tail: list[bytes], message: str
) -> None:
    odd_runner = answering(200, b"application/x-ndjson", b'{"response":"a "}\n', *tail)
    async with make_chat(odd_runner) as client:
        response = await client.post("/api/generate", json={"model": "tinyllama", "prompt": "hi"})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["response"] == "a "
    assert lines[-1] == {"error": message}


@pytest.mark.parametrize(("tail", "message"), [BROKEN_RUNNER_STREAMS[0], BROKEN_RUNNER_STREAMS[2]])
async def test_a_broken_runner_stream_ends_chats_stream_with_an_error(
    make_chat: Callable[..., httpx.AsyncClient], tail: list[bytes], message: str
) -> None:
    # /chat passes the runner's lines on as they are: any JSON will do, so only these two break it.
    odd_runner = answering(200, b"application/x-ndjson", b'{"response":"a "}\n', *tail)
    async with make_chat(odd_runner) as client:
        response = await client.post("/chat", json={"prompt": "hi", "stream": True})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {"response": "a "}
    assert lines[-1]["error"]["code"] == "upstream_error"
    assert lines[-1]["error"]["message"] == message


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        pytest.param([b"Internal\n"], "Ollama sent a line that is not JSON.", id="not-json"),
        pytest.param([b"[1, 2]\n"], "Ollama sent a line that is not a JSON object.", id="not-an-object"),
        pytest.param([], "Ollama ended the stream before the generation was done.", id="cut-short"),
    ],
)
async def test_an_ollama_stream_that_breaks_ends_the_stream_with_an_error_line(
    fake: FakeOllama,
    runner_settings: RunnerSettings,
    make_chat: Callable[..., httpx.AsyncClient],
    tail: list[bytes],
    message: str,
) -> None:
    generation = answering(200, b"application/x-ndjson", b'{"response":"a ","done":false}\n', *tail)

    async def odd_ollama(scope: Scope, receive: Receive, send: Send) -> None:
        is_generation = scope["type"] == "http" and scope["path"] == "/api/generate"
        await (generation if is_generation else fake.app)(scope, receive, send)

    runner_app = create_runner_app(runner_settings, ollama_transport=httpx.ASGITransport(odd_ollama))
    async with make_chat(runner_app) as client:
        response = await client.post("/chat", json={"prompt": "hi", "stream": True})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {"response": "a "}
    assert lines[-1]["error"]["code"] == "upstream_error"
    assert lines[-1]["error"]["message"] == message


async def test_runner_readyz_is_503_when_ollama_is_down(
    runner_settings: RunnerSettings,
) -> None:
    settings = dataclasses.replace(runner_settings, ollama_url=f"http://127.0.0.1:{free_port()}")
    app = create_runner_app(settings)
    async with AppClient(app, base_url="http://runner.test") as client:
        response = await client.get("/readyz")
        health = await client.get("/healthz")
    assert response.status_code == 503
    assert _error(response)["code"] == "not_ready"
    assert health.status_code == 200


async def test_runner_validates_its_own_input(runner_client: httpx.AsyncClient, fake: FakeOllama) -> None:
    response = await runner_client.post("/v1/run/tinyllama", json={"prompt": 5})
    assert response.status_code == 422
    assert _error(response)["code"] == "invalid_request"
    assert fake.recorder.bodies == []


async def test_unexpected_exception_is_a_500_envelope_without_traceback(runner_settings: RunnerSettings) -> None:
    async def exploding(scope, receive, send):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals")

    runner_app = create_runner_app(runner_settings, ollama_transport=httpx.ASGITransport(exploding))
    transport = httpx.ASGITransport(runner_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://runner.test") as client:
        response = await client.post("/v1/run/tinyllama", json={"prompt": "hi"})
    assert response.status_code == 500
    assert _error(response)["code"] == "internal_error"
    assert "secret" not in response.text
    assert response.headers["x-request-id"]


async def test_an_error_mid_stream_is_an_sse_error_event(chat_client: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.error_line_after_tokens = 1
    response = await chat_client.post(
        "/chat", json={"prompt": "a b", "stream": True}, headers={"Accept": "text/event-stream"}
    )
    events = [e for e in response.text.split("\n\n") if e]
    assert events[0] == 'data: {"response":"a "}'
    name, data = events[-1].split("\n")
    assert name == "event: error"
    assert json.loads(data.removeprefix("data: "))["error"]["code"] == "upstream_error"

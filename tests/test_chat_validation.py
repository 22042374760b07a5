"""Every bad request is refused by chat with the envelope, before anything reaches the runner or Ollama."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.fake_ollama import FakeOllama

BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("not json", b"{prompt: hi}", 400, "invalid_json"),
    ("empty body", b"", 400, "invalid_json"),
    ("invalid utf-8", b'{"prompt": "\xff\xfe"}', 400, "invalid_json"),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),
    ("array body", b'["hi"]', 422, "invalid_request"),
    ("string body", b'"hi"', 422, "invalid_request"),
    ("null body", b"null", 422, "invalid_request"),
]

BAD_REQUESTS: list[tuple[str, Any, int, str]] = [
    ("no prompt", {}, 422, "invalid_request"),
    ("empty prompt", {"prompt": ""}, 422, "invalid_request"),
    ("blank prompt", {"prompt": "   \n"}, 422, "invalid_request"),
    ("numeric prompt", {"prompt": 42}, 422, "invalid_request"),
    ("null prompt", {"prompt": None}, 422, "invalid_request"),
    (
        "both prompt and messages",
        {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
        422,
        "invalid_request",
    ),
    ("messages not a list", {"messages": "hi"}, 422, "invalid_request"),
    ("messages empty", {"messages": []}, 422, "invalid_request"),
    ("message without role", {"messages": [{"content": "hi"}]}, 422, "invalid_request"),
    ("message bad role", {"messages": [{"role": "god", "content": "hi"}]}, 422, "invalid_request"),
    ("message role object", {"messages": [{"role": {}, "content": "hi"}]}, 422, "invalid_request"),
    ("message role list", {"messages": [{"role": ["user"], "content": "hi"}]}, 422, "invalid_request"),
    ("message content not text", {"messages": [{"role": "user", "content": 1}]}, 422, "invalid_request"),
    ("message extra field", {"messages": [{"role": "user", "content": "x", "images": []}]}, 422, "invalid_request"),
    ("unknown field", {"prompt": "hi", "suffix": "x"}, 422, "invalid_request"),
    ("format not json", {"prompt": "hi", "format": "xml"}, 422, "invalid_request"),
    ("tools with a prompt", {"prompt": "hi", "tools": [{"type": "function"}]}, 422, "invalid_request"),
    ("system not text", {"prompt": "hi", "system": ["x"]}, 422, "invalid_request"),
    ("stream not bool", {"prompt": "hi", "stream": "yes"}, 422, "invalid_request"),
    ("options not object", {"prompt": "hi", "options": [1]}, 422, "invalid_request"),
    ("option not allowed", {"prompt": "hi", "options": {"num_gpu": 99}}, 422, "invalid_request"),
    ("temperature text", {"prompt": "hi", "options": {"temperature": "hot"}}, 422, "invalid_request"),
    ("temperature bool", {"prompt": "hi", "options": {"temperature": True}}, 422, "invalid_request"),
    ("temperature huge", {"prompt": "hi", "options": {"temperature": 1e308}}, 422, "invalid_request"),
    ("seed float", {"prompt": "hi", "options": {"seed": 1.5}}, 422, "invalid_request"),
    ("seed huge", {"prompt": "hi", "options": {"seed": 10**40}}, 422, "invalid_request"),
    ("num_ctx zero", {"prompt": "hi", "options": {"num_ctx": 0}}, 422, "invalid_request"),
    ("stop not list", {"prompt": "hi", "options": {"stop": "\n"}}, 422, "invalid_request"),
    ("stop empty string", {"prompt": "hi", "options": {"stop": [""]}}, 422, "invalid_request"),
    ("keep_alive object", {"prompt": "hi", "keep_alive": {}}, 422, "invalid_request"),
    ("model not text", {"prompt": "hi", "model": 7}, 422, "invalid_request"),
    ("model not allowed", {"prompt": "hi", "model": "llama3:70b"}, 404, "model_not_found"),
    ("prompt too long", {"prompt": "x" * 16_001}, 422, "prompt_too_long"),
    ("system pushes past the limit", {"prompt": "x" * 16_000, "system": "y"}, 422, "prompt_too_long"),
    ("messages too long", {"messages": [{"role": "user", "content": "x" * 9000}] * 2}, 422, "prompt_too_long"),
]


def _assert_refused(response: httpx.Response, status: int, code: str, fake: FakeOllama) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert body["error"]["message"].endswith(".")
    assert "Traceback" not in response.text
    assert fake.recorder.bodies == []


@pytest.mark.parametrize(("name", "raw", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_bodies(
    chat_client: httpx.AsyncClient, fake: FakeOllama, name: str, raw: bytes, status: int, code: str
) -> None:
    response = await chat_client.post("/chat", content=raw, headers={"Content-Type": "application/json"})
    _assert_refused(response, status, code, fake)


@pytest.mark.parametrize(("name", "body", "status", "code"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
async def test_bad_requests(
    chat_client: httpx.AsyncClient, fake: FakeOllama, name: str, body: Any, status: int, code: str
) -> None:
    response = await chat_client.post("/chat", json=body)
    _assert_refused(response, status, code, fake)


async def test_body_over_the_limit_is_refused_while_reading(
    runner_app: Starlette, make_chat: Callable[..., httpx.AsyncClient], fake: FakeOllama
) -> None:
    sent = 0

    async def endless() -> Any:
        nonlocal sent
        while sent < 10 * 1024 * 1024:
            sent += 64 * 1024
            yield b"x" * (64 * 1024)

    async with make_chat(runner_app, max_body_bytes=256 * 1024) as client:
        # No Content-Length: the limit must hold while streaming the body in.
        response = await client.post("/chat", content=endless())
    _assert_refused(response, 413, "body_too_large", fake)
    assert sent < 1024 * 1024


async def test_declared_length_over_the_limit_is_refused_up_front(
    chat_client: httpx.AsyncClient, fake: FakeOllama
) -> None:
    response = await chat_client.post("/chat", content=b"x" * (300 * 1024))
    _assert_refused(response, 413, "body_too_large", fake)


async def test_slow_body_trips_the_read_timeout(
    runner_app: Starlette, make_chat: Callable[..., httpx.AsyncClient], fake: FakeOllama
) -> None:
    import anyio

    async def trickle() -> Any:
        yield b'{"prompt": '
        await anyio.sleep(1.0)  # a client stalled mid-body: the behaviour under test
        yield b'"hi"}'

    async with make_chat(runner_app, body_read_timeout_s=0.2) as client:
        response = await client.post("/chat", content=trickle())
    _assert_refused(response, 408, "body_read_timeout", fake)


async def test_wrong_content_type_is_still_read_as_json(chat_client: httpx.AsyncClient) -> None:
    # curl -d sends application/x-www-form-urlencoded; the seed accepted it, so do we.
    response = await chat_client.post(
        "/chat", content=b'{"prompt": "hi"}', headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200

"""What the runner makes of Ollama's odd answers: each a clear error envelope, never a 200 or a 500."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings

from tests.inprocess import AppClient, answering
from tests.jobs.helpers import status_is, wait_for

JSON = b"application/json"
NDJSON = b"application/x-ndjson"
TEXT = b"text/plain"
RUN = ("POST", "/v1/run/tinyllama", {"prompt": "hi"})
EMBED = ("POST", "/v1/embed/tinyllama", {"input": ["hi"]})
TAGS = ("GET", "/v1/ollama/tags", None)

CASES = [
    pytest.param(
        (400, JSON, b'{"error":"tinyllama does not support tools"}'),
        RUN,
        422,
        "invalid_request",
        "Ollama refused the request: tinyllama does not support tools",
        id="400-is-the-request's-fault",
    ),
    pytest.param(
        (500, TEXT, b"boom"),
        RUN,
        502,
        "upstream_error",
        "Ollama answered 500: boom",
        id="an-error-body-that-is-not-json",
    ),
    pytest.param(
        (500, TEXT, b""), RUN, 502, "upstream_error", "Ollama answered 500: no message", id="an-empty-error-body"
    ),
    pytest.param(
        (200, NDJSON, b'{"response":"a ","done":false}\n'),
        RUN,
        502,
        "upstream_error",
        "Ollama ended the stream before the generation was done.",
        id="a-whole-generation-cut-short",
    ),
    pytest.param(
        (200, JSON, b"oops"),
        EMBED,
        502,
        "upstream_error",
        "Ollama answered an embedding request with something that is not embeddings.",
        id="embeddings-that-are-not-json",
    ),
    pytest.param(
        (200, JSON, b'{"embeddings": 3}'),
        EMBED,
        502,
        "upstream_error",
        "Ollama answered an embedding request with something that is not embeddings.",
        id="embeddings-that-are-not-a-list",
    ),
    pytest.param((503, TEXT, b"down"), TAGS, 502, "upstream_error", "Ollama answered 503: down", id="metadata-failing"),
    pytest.param(
        (200, TEXT, b"oops"),
        TAGS,
        502,
        "upstream_error",
        "Ollama answered /api/tags with something that is not JSON.",
        id="metadata-that-is-not-json",
    ),
]


async def ask(settings: RunnerSettings, ollama: tuple[int, bytes, bytes], call: tuple[str, str, Any]) -> httpx.Response:
    app = create_runner_app(settings, ollama_transport=httpx.ASGITransport(answering(*ollama)))
    method, path, body = call
    async with AppClient(app, base_url="http://runner.test") as client:
        return await client.request(method, path, json=body)


@pytest.mark.parametrize(("ollama", "call", "status", "code", "message"), CASES)
async def test_an_odd_answer_is_a_clear_error(
    runner_settings: RunnerSettings,
    ollama: tuple[int, bytes, bytes],
    call: tuple[str, str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    response = await ask(runner_settings, ollama, call)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"] == message


@pytest.mark.parametrize(
    ("ollama", "message"),
    [
        ((200, TEXT, b"Ollama is running"), "Ollama answered /api/version with something that is not JSON."),
        ((200, JSON, b'{"models": 5}'), "Ollama's /api/tags is not a list of models."),
        ((200, JSON, b'{"models": [5]}'), "Ollama's /api/tags is not a list of models."),
    ],
)
async def test_readyz_is_503_when_ollama_answers_oddly(
    runner_settings: RunnerSettings, ollama: tuple[int, bytes, bytes], message: str
) -> None:
    settings = dataclasses.replace(runner_settings, ready_model="tinyllama")
    response = await ask(settings, ollama, ("GET", "/readyz", None))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert response.json()["error"]["message"] == f"Ollama is not ready: {message}"


async def test_a_job_whose_generation_is_cut_short_fails_saying_so(
    runner_settings: RunnerSettings, make_chat: Callable[..., httpx.AsyncClient]
) -> None:
    cut_short = answering(200, NDJSON, b'{"response":"a ","done":false}\n')
    runner_app = create_runner_app(runner_settings, ollama_transport=httpx.ASGITransport(cut_short))
    async with make_chat(runner_app) as chat:
        job_id = (await chat.post("/v1/jobs", json={"prompt": "hi"})).json()["id"]
        job = await wait_for(chat, job_id, status_is("failed"))
    assert job["error"]["code"] == "upstream_error"
    assert job["error"]["message"] == "Ollama ended the stream before the generation was done."

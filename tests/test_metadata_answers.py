"""What chat makes of odd metadata answers (tags, show, ps, version) relayed by the runner: a clear 502
in Ollama's error shape, never a 200 or a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.inprocess import answering

JSON = b"application/json"
TAGS = ("GET", "/api/tags", None)

CASES = [
    pytest.param(
        (200, JSON, b'{"models": 5}'),
        TAGS,
        "Ollama answered a model list that is not a list of models.",
        id="tags-not-a-list",
    ),
    pytest.param((404, JSON, b'{"models": []}'), TAGS, "Ollama answered /api/tags with 404.", id="tags-refused"),
    pytest.param(
        (200, JSON, b"[]"),
        ("POST", "/api/show", {"model": "tinyllama"}),
        "Ollama answered /api/show with 200.",
        id="show-not-an-object",
    ),
    pytest.param((400, JSON, b"{}"), ("GET", "/api/ps", None), "Ollama answered /api/ps with 400.", id="ps-refused"),
    pytest.param(
        (400, JSON, b"{}"),
        ("GET", "/api/version", None),
        "Ollama answered /api/version with 400.",
        id="version-refused",
    ),
    pytest.param(
        (200, JSON, b"oops"),
        TAGS,
        "The runner answered a metadata request with something that is not JSON.",
        id="runner-not-json",
    ),
    pytest.param((500, JSON, b"{}"), TAGS, "The runner failed with status 500.", id="runner-failing"),
]


@pytest.mark.parametrize(("runner", "call", "message"), CASES)
async def test_an_odd_metadata_answer_is_a_502(
    make_chat: Callable[..., httpx.AsyncClient],
    runner: tuple[int, bytes, bytes],
    call: tuple[str, str, Any],
    message: str,
) -> None:
    method, path, body = call
    async with make_chat(answering(*runner)) as client:
        response = await client.request(method, path, json=body)
    assert response.status_code == 502
    assert response.json() == {"error": message}


async def test_the_runners_own_refusal_of_a_metadata_request_is_relayed(
    make_chat: Callable[..., httpx.AsyncClient],
) -> None:
    envelope = b'{"error": {"code": "not_ready", "message": "Ollama is not ready: down"}}'
    async with make_chat(answering(503, JSON, envelope)) as client:
        response = await client.get("/api/tags")
    assert response.status_code == 503
    assert response.json() == {"error": "Ollama is not ready: down"}

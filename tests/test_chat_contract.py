"""The public contract of POST /chat, through the real chat and runner apps, with a fake Ollama."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fake_ollama import FakeOllama


async def test_seed_contract_prompt_in_response_out(chat_client: httpx.AsyncClient, fake: FakeOllama) -> None:
    response = await chat_client.post("/chat", json={"prompt": "Why is the sky blue?"})
    assert response.status_code == 200
    body = response.json()
    assert body["response"] == "Why is the "
    assert body["model"] == "tinyllama"
    assert body["done_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3}
    assert set(body["timings"]) == {"queue_ms", "total_ms", "load_ms", "prompt_eval_ms", "eval_ms", "tokens_per_s"}
    assert body["timings"]["load_ms"] == 0.001
    # Streamed from Ollama even for a non-streamed reply (so a dropped request stops at Ollama's
    # next token), and gathered by the runner into one answer.
    assert fake.recorder.bodies == [
        {"path": "/api/generate", "model": "tinyllama", "prompt": "Why is the sky blue?", "stream": True}
    ]
    assert float(response.headers["x-queue-wait-ms"]) >= 0
    assert len(response.headers["x-request-id"]) == 32


async def test_request_id_is_propagated_to_the_runner_and_echoed(chat_client: httpx.AsyncClient) -> None:
    response = await chat_client.post("/chat", json={"prompt": "hi"}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_messages_system_and_options_go_to_api_chat(chat_client: httpx.AsyncClient, fake: FakeOllama) -> None:
    payload = {
        "messages": [{"role": "user", "content": "hello there"}],
        "system": "Be brief.",
        "options": {"temperature": 0.2, "seed": 42, "num_predict": 8, "stop": ["\n"]},
        "keep_alive": "5m",
    }
    response = await chat_client.post("/chat", json=payload)
    assert response.status_code == 200
    assert response.json()["response"] == "hello there hello "
    assert fake.recorder.bodies == [
        {
            "path": "/api/chat",
            "model": "tinyllama",
            "stream": True,  # always streamed from Ollama, gathered by the runner
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
            "options": {"temperature": 0.2, "seed": 42, "num_predict": 8, "stop": ["\n"]},
            "keep_alive": "5m",
        }
    ]


async def test_stream_is_ndjson_chunks_then_done(chat_client: httpx.AsyncClient, fake: FakeOllama) -> None:
    response = await chat_client.post("/chat", json={"prompt": "one two three", "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[:3] == [{"response": "one "}, {"response": "two "}, {"response": "three "}]
    assert lines[3]["done"] is True
    assert lines[3]["done_reason"] == "stop"
    assert lines[3]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3}
    assert len(lines) == 4
    assert fake.recorder.bodies[0]["stream"] is True


async def test_stream_as_server_sent_events(chat_client: httpx.AsyncClient) -> None:
    response = await chat_client.post(
        "/chat", json={"prompt": "a b", "stream": True}, headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[0] == 'data: {"response":"a "}'
    assert events[1] == 'data: {"response":"b "}'
    assert events[2] == 'data: {"response":"a "}'
    assert events[3].startswith('event: done\ndata: {"done":true,')
    assert events[4] == ""


async def test_healthz_makes_no_upstream_call(chat_client: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.faults.fail_status = 500
    response = await chat_client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert fake.recorder.bodies == []


async def test_readyz_reports_the_runner_and_ollama(chat_client: httpx.AsyncClient) -> None:
    response = await chat_client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["runner"] == {
        "status": "ok",
        "ollama_version": "0.0.0-fake",
        "queue_depth": 0,
        "queue": {"interactive": 0, "batch": 0},
        "busy": False,
    }


@pytest.mark.parametrize("path", ["/nope", "/chat/extra"])
async def test_unknown_route_is_an_envelope(chat_client: httpx.AsyncClient, path: str) -> None:
    response = await chat_client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_wrong_method_is_an_envelope(chat_client: httpx.AsyncClient) -> None:
    response = await chat_client.get("/chat")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"

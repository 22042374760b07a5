"""The Lambda handlers, called with every event in events/ as ``sam local invoke -e`` would, whole responses asserted.

The handler modules build their apps from the environment at import, as on AWS; the stack
behind them is real: a fake Ollama and a runner served on loopback.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings

from local.lambda_context import LambdaContext
from local.ollama.settings import DEFAULT_MODEL_NAME
from tests.fake_ollama import FakeOllama
from tests.lambda_standin import end_handler
from tests.servers import REPO, serve_in_thread

EVENTS = REPO / "events"
MODEL = DEFAULT_MODEL_NAME  # the model `make up` serves, which the events name (or leave to DEFAULT_MODEL)
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Handler], FakeOllama]]:
    fake = FakeOllama(models=(MODEL,))
    lock = str(tmp_path_factory.mktemp("lock") / "runner.lock")
    with serve_in_thread(fake.app) as ollama_url:
        runner_app = create_runner_app(RunnerSettings(ollama_url=ollama_url, lock_path=lock))
        with serve_in_thread(runner_app) as runner_url, pytest.MonkeyPatch.context() as env:
            env.setenv("OLLAMA_HOST", ollama_url)
            env.setenv("LOCK_PATH", lock)
            env.setenv("RUNNER_URL", runner_url)
            env.setenv("DEFAULT_MODEL", MODEL)  # as `make up` runs chat, for which the events are written
            env.setenv("AUTH", "off")  # as `python -m local invoke` runs chat: the events carry no key
            loaded: dict[str, Handler] = {}
            for service in ("chat", "runner"):
                importlib.reload(importlib.import_module(f"{service}.app"))
                module = importlib.reload(importlib.import_module(f"{service}.handler"))
                loaded[service] = module.handler
            yield loaded, fake
            for handler in loaded.values():
                end_handler(handler)


def _invoke(handlers: dict[str, Handler], event_file: str) -> dict[str, Any]:
    service = "runner" if event_file.startswith("runner") else "chat"
    event = json.loads((EVENTS / event_file).read_text())
    return handlers[service](event, LambdaContext(function_name=f"{service}-function"))


def normalized_body(body: str) -> Any:
    """Parse a JSON body and blank the timings, the only fields that vary run to run."""
    data = json.loads(body)
    if isinstance(data, dict) and "timings" in data:
        data["timings"] = {key: "<varies>" for key in data["timings"]}
    return data


def test_every_event_file_is_covered() -> None:
    assert {p.name for p in EVENTS.glob("*.json")} == {*EXPECTED, "chat-stream.json"}


CHAT_REPLY = {
    "model": MODEL,
    "response": "Why is the ",
    "done_reason": "stop",
    "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    "timings": {
        key: "<varies>" for key in ("queue_ms", "total_ms", "load_ms", "prompt_eval_ms", "eval_ms", "tokens_per_s")
    },
}

EXPECTED: dict[str, tuple[int, str, Any]] = {
    "chat-post.json": (200, "application/json", CHAT_REPLY),
    "chat-post-rest-v1.json": (200, "application/json", CHAT_REPLY),
    "chat-post-function-url.json": (200, "application/json", CHAT_REPLY),
    "runner-run.json": (200, "application/json", CHAT_REPLY),
    "chat-healthz.json": (200, "application/json", {"status": "ok"}),
    "chat-bad-input.json": (
        422,
        "application/json",
        {
            "error": {
                "code": "invalid_request",
                "message": "'prompt' must not be empty.",
                "request_id": "evt-chat-bad-input",
            }
        },
    ),
}


@pytest.mark.parametrize("event_file", sorted(EXPECTED))
def test_handler_answers_the_event(handlers: tuple[dict[str, Handler], FakeOllama], event_file: str) -> None:
    status, content_type, body = EXPECTED[event_file]
    event = json.loads((EVENTS / event_file).read_text())
    request_id = event["headers"].get("x-request-id") or event["headers"]["X-Request-ID"]
    response = _invoke(handlers[0], event_file)
    if event.get("version") == "2.0":  # HTTP API and Function URL payload v2
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    else:  # REST API payload v1
        assert set(response) == {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
        assert response["multiValueHeaders"] == {}
    assert response["statusCode"] == status
    assert response["isBase64Encoded"] is False
    headers = response["headers"]
    assert headers["content-type"] == content_type
    assert headers["x-request-id"] == request_id
    assert headers["content-length"] == str(len(response["body"].encode()))
    if status == 200 and "timings" in body:
        assert float(headers.pop("x-queue-wait-ms")) >= 0
        assert int(headers.pop("x-queue-position")) == 0  # nobody else: it ran at once
    assert set(headers) == {"content-type", "content-length", "x-request-id"}
    assert normalized_body(response["body"]) == body


def test_streaming_event_gets_the_whole_ndjson_body_at_once(
    handlers: tuple[dict[str, Handler], FakeOllama],
) -> None:
    response = _invoke(handlers[0], "chat-stream.json")
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is False
    headers = response["headers"]
    assert headers["content-type"] == "application/x-ndjson"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert headers["x-request-id"] == "evt-chat-stream"
    lines = [normalized_body(line) for line in response["body"].splitlines()]
    assert lines == [
        {"response": "Why "},
        {"response": "is "},
        {"response": "the "},
        {
            "done": True,
            "done_reason": "stop",
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
            "timings": {
                key: "<varies>"
                for key in ("queue_ms", "total_ms", "load_ms", "prompt_eval_ms", "eval_ms", "tokens_per_s")
            },
        },
    ]


def test_queue_wait_never_outlives_the_invocation(tmp_path: Path) -> None:
    from runner.app import queue_timeout_s

    settings = RunnerSettings(queue_timeout_s=300)
    context = LambdaContext(function_name="runner", timeout_s=10)
    assert 8.5 < queue_timeout_s(settings, {"aws.context": context}) <= 9.0
    assert queue_timeout_s(settings, {}) == 300

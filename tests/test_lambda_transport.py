"""Chat reaching the runner through lambda:Invoke: the real runner handler in-process; Stubber for faults."""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from chat.app import create_app as create_chat_app
from chat.app import runner_transport_for
from chat.lambda_transport import LambdaInvokeTransport, full_jitter
from chat.settings import Settings as ChatSettings
from runner.settings import Settings as RunnerSettings
from servicekit.lambda_adapter import lambda_handler
from servicekit.lambda_event import LambdaInvoker

from tests.conftest import runner_app_for
from tests.fake_ollama import FakeOllama
from tests.lambda_standin import InProcessLambda

RUNNER = "serverless-ollama-chat-RunnerFunction-ABC123"


@pytest.fixture
def runner_lambda(fake: FakeOllama, runner_settings: RunnerSettings) -> Iterator[InProcessLambda]:
    standin = InProcessLambda(lambda_handler(runner_app_for(fake, runner_settings)))
    yield standin
    standin.close()


def chat_over(
    invoker: LambdaInvoker, deadline_s: float = 27.0, backoff: Callable[[int], float] = full_jitter
) -> httpx.AsyncClient:
    settings = ChatSettings(runner_function=RUNNER, chat_deadline_s=deadline_s, auth="off")
    transport = LambdaInvokeTransport(invoker, RUNNER, default_deadline_s=deadline_s, backoff=backoff)
    app = create_chat_app(settings, runner_transport=transport)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://chat.test")


@pytest.fixture
async def chat(runner_lambda: InProcessLambda) -> AsyncIterator[httpx.AsyncClient]:
    async with chat_over(runner_lambda) as client:
        yield client


async def test_chat_through_lambda_invoke_of_the_real_runner_handler(
    chat: httpx.AsyncClient, runner_lambda: InProcessLambda, fake: FakeOllama
) -> None:
    response = await chat.post("/chat", json={"prompt": "over lambda"}, headers={"X-Request-ID": "lam-1"})
    assert response.status_code == 200
    assert response.json()["response"] == "over lambda over "
    assert response.headers["x-request-id"] == "lam-1"
    assert float(response.headers["x-queue-wait-ms"]) >= 0
    event = runner_lambda.invocations[0]
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/v1/run/tinyllama"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["headers"]["x-request-id"] == "lam-1"
    assert json.loads(event["body"]) == {"prompt": "over lambda"}


async def test_streaming_over_lambda_arrives_whole(chat: httpx.AsyncClient) -> None:
    response = await chat.post("/chat", json={"prompt": "a b c", "stream": True})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line.get("response") for line in lines[:3]] == ["a ", "b ", "c "]
    assert lines[-1]["done"] is True


async def test_runner_errors_are_relayed_over_lambda(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    fake.models = set()
    response = await chat.post("/chat", json={"prompt": "hi"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


# -- faults, with botocore's Stubber on a real boto3 client -------------------------------------


def _stubbed() -> tuple[Any, Stubber]:
    client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return client, Stubber(client)


def _payload(data: Mapping[str, Any]) -> StreamingBody:
    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


OK_RESPONSE = {
    "statusCode": 200,
    "headers": {"content-type": "application/json", "x-queue-wait-ms": "0.1"},
    "body": json.dumps(
        {
            "model": "tinyllama",
            "response": "fine",
            "done_reason": "stop",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "timings": {"queue_ms": 0.1, "total_ms": 1.0, "load_ms": 0.0, "tokens_per_s": 1.0},
        }
    ),
    "isBase64Encoded": False,
}


def _throttle(stubber: Stubber) -> None:
    stubber.add_client_error(
        "invoke",
        service_error_code="TooManyRequestsException",
        service_message="Rate Exceeded.",
        http_status_code=429,
        response_meta={"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"},
    )


async def test_throttled_invocations_are_retried_with_backoff() -> None:
    client, stubber = _stubbed()
    for _ in range(3):
        _throttle(stubber)
    stubber.add_response("invoke", {"StatusCode": 200, "Payload": _payload(OK_RESPONSE)})
    with stubber:
        async with chat_over(client) as chat:
            response = await chat.post("/chat", json={"prompt": "hi"})
        stubber.assert_no_pending_responses()
    assert response.status_code == 200
    assert response.json()["response"] == "fine"


async def test_throttled_until_the_deadline_is_503_runner_busy() -> None:
    client, stubber = _stubbed()
    for _ in range(200):
        _throttle(stubber)
    with stubber:
        async with chat_over(client, deadline_s=0.5) as chat:
            started = time.perf_counter()
            response = await chat.post("/chat", json={"prompt": "hi"})
            elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "runner_busy"
    assert int(response.headers["retry-after"]) >= 1
    # The whole budget is spent trying (the deadline is 0.5 s), then chat answers promptly.
    assert 0.45 < elapsed < 1.5


async def test_a_long_jitter_draw_is_cut_to_the_deadline_not_a_reason_to_give_up() -> None:
    client, stubber = _stubbed()
    for _ in range(3):
        _throttle(stubber)
    stubber.add_response("invoke", {"StatusCode": 200, "Payload": _payload(OK_RESPONSE)})
    counting = CountingInvoker(client)
    with stubber:
        # Every draw is far longer than the 0.3 s budget: chat sleeps what is left and tries once more
        # at the deadline rather than answering 503 at once.
        async with chat_over(counting, deadline_s=0.3, backoff=lambda attempt: 60.0) as chat:
            started = time.perf_counter()
            response = await chat.post("/chat", json={"prompt": "hi"})
            elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "runner_busy"
    assert counting.calls == 2  # the first try, then one at the deadline
    assert 0.25 < elapsed < 1.5


class CountingInvoker:
    """A boto3 Lambda client that counts its invocations."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> Mapping[str, Any]:
        self.calls += 1
        result: Mapping[str, Any] = self.client.invoke(
            FunctionName=FunctionName, InvocationType=InvocationType, Payload=Payload
        )
        return result


async def test_function_error_is_502() -> None:
    client, stubber = _stubbed()
    crash = {"errorMessage": "boom", "errorType": "RuntimeError", "stackTrace": []}
    stubber.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _payload(crash)})
    with stubber:
        async with chat_over(client) as chat:
            response = await chat.post("/chat", json={"prompt": "hi"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert "RuntimeError" in response.json()["error"]["message"]


async def test_other_client_errors_are_502_without_retry() -> None:
    client, stubber = _stubbed()
    stubber.add_client_error("invoke", service_error_code="ResourceNotFoundException", http_status_code=404)
    with stubber:
        async with chat_over(client) as chat:
            response = await chat.post("/chat", json={"prompt": "hi"})
        stubber.assert_no_pending_responses()
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


class Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> Mapping[str, Any]:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (ReadTimeoutError(endpoint_url="https://lambda.us-east-1.amazonaws.com"), 504, "upstream_timeout"),
        (EndpointConnectionError(endpoint_url="https://lambda.us-east-1.amazonaws.com"), 502, "upstream_unavailable"),
    ],
)
async def test_botocore_transport_failures(exc: Exception, status: int, code: str) -> None:
    async with chat_over(Failing(exc)) as chat:
        response = await chat.post("/chat", json={"prompt": "hi"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_runner_function_setting_builds_one_boto3_client_without_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    transport = runner_transport_for(ChatSettings(runner_function=RUNNER))
    assert isinstance(transport, LambdaInvokeTransport)
    config = transport._invoker.meta.config  # type: ignore[attr-defined]
    assert config.retries["total_max_attempts"] == 1  # no botocore retry at all
    assert config.read_timeout >= 900
    assert config.connect_timeout <= 2
    assert runner_transport_for(ChatSettings()) is None


def test_chat_over_lambda_invoke_of_the_runner_handler_module(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployed object itself: ``runner.handler.handler``, built from the environment at import."""
    import asyncio
    import importlib

    from tests.servers import serve_in_thread

    fake = FakeOllama()
    with serve_in_thread(fake.app) as ollama_url:
        monkeypatch.setenv("OLLAMA_HOST", ollama_url)
        monkeypatch.setenv("LOCK_PATH", str(tmp_path / "runner.lock"))
        monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
        importlib.reload(importlib.import_module("runner.app"))
        handler_module = importlib.reload(importlib.import_module("runner.handler"))
        standin = InProcessLambda(handler_module.handler)
        try:

            async def ask() -> httpx.Response:
                async with chat_over(standin) as chat:
                    return await chat.post("/chat", json={"prompt": "deployed object"})

            response = asyncio.run(ask())
        finally:
            standin.close()
    assert response.status_code == 200
    assert response.json()["response"] == "deployed object deployed "
    assert fake.recorder.prompts == ["deployed object"]

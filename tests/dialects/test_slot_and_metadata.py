"""Every dialect through the one slot; metadata beside it, never queued; refusals in each dialect's shape."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import ollama
import openai
import pytest
from chat.app import create_app as create_chat_app
from chat.dialects import error_renderer
from chat.settings import Settings as ChatSettings
from openai.types.chat import ChatCompletionMessageParam
from runner.settings import Settings as RunnerSettings
from servicekit.errors import ServiceError, exception_handlers_for
from servicekit.requestid import RequestIdMiddleware
from servicekit.state.factory import key_store
from servicekit.state.keys import new_api_key
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from tests.conftest import runner_app_for
from tests.dialects.conftest import chat_app_over, ollama_client, openai_client
from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient
from tests.waiting import eventually

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x"}]


async def test_metadata_answers_while_a_long_generation_holds_the_slot(
    fake: FakeOllama, chat_app: Starlette, api_key: str
) -> None:
    fake.faults.token_delay_s = 0.5
    fake.faults.tokens = 4  # a 2 s generation
    async with httpx.AsyncClient(transport=httpx.ASGITransport(chat_app), base_url="http://chat.test") as http:
        generation = asyncio.create_task(http.post("/chat", json={"prompt": "long one"}))
        await eventually(lambda: fake.recorder.active == 1, what="the generation started")
        ollama_chat = ollama_client(chat_app)
        async with openai_client(chat_app, api_key) as openai_chat:
            tags = await ollama_chat.list()
            shown = await ollama_chat.show("tinyllama")
            loaded = await ollama_chat.ps()
            version = (await http.get("/api/version")).json()
            root = (await http.get("/")).text
            models = [m.id async for m in openai_chat.models.list()]
        # All answered while the generation still held the slot: it had not finished.
        assert fake.recorder.active == 1
        assert not generation.done()
        assert (await generation).status_code == 200
    assert [m.model for m in tags.models] == ["tinyllama:latest"]
    assert shown.capabilities == ["completion"]
    assert loaded.models
    assert version == {"version": "0.0.0-fake"}
    assert root == "Ollama is running"
    assert models == ["tinyllama:latest"]


async def test_every_dialect_waits_its_turn_in_the_one_slot(
    fake: FakeOllama, chat_app: Starlette, runner_app: Starlette, api_key: str
) -> None:
    fake.faults.token_delay_s = 0.02
    ollama_chat = ollama_client(chat_app)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(chat_app), base_url="http://chat.test") as http,
        openai_client(chat_app, api_key) as openai_chat,
    ):

        async def ollama_stream() -> list[str]:
            parts = await ollama_chat.chat(model="tinyllama", messages=[{"role": "user", "content": "o1"}], stream=True)
            return [p.message.content or "" async for p in parts]

        async def openai_stream() -> str:
            chunks = await openai_chat.chat.completions.create(
                model="tinyllama", messages=[{"role": "user", "content": "a1"}], stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

        steps: list[Callable[[], Awaitable[Any]]] = [
            lambda: http.post("/chat", json={"prompt": "c1"}),
            ollama_stream,
            openai_stream,
            lambda: ollama_chat.generate(model="tinyllama", prompt="o2"),
            lambda: openai_chat.completions.create(model="tinyllama", prompt="a2", stream=False),
            lambda: ollama_chat.embed(model="tinyllama", input="e1"),
            lambda: openai_chat.embeddings.create(model="tinyllama", input="e2"),
        ]
        tasks: list[asyncio.Task[Any]] = []
        for step in steps:
            tasks.append(asyncio.ensure_future(step()))
            # Each is in line (the first generating, the rest queued) before the next is sent.
            await eventually(_in_line(fake, runner_app, len(tasks)))
        results = await asyncio.gather(*tasks)
    assert fake.recorder.peak == 1
    # The fair queue's order between the two callers (README, "How the queue works"): the requests
    # without a key are one caller (the address: c1, o1, o2, e1), the openai client's key another
    # (a1, a2, e2); each caller's own run first in, first out, and they take turns.
    assert fake.recorder.prompts == ["c1", "a1", "o1", "a2", "o2", "e2", "e1"]
    # Queued behind the /chat request, the Ollama stream still sent nothing but its chunks (no keep-alive
    # lines: the official client would hand each one to the caller as an empty message).
    assert results[1] == ["o1 ", "o1 ", "o1 ", ""]
    assert results[2] == "a1 a1 a1 "


def _in_line(fake: FakeOllama, runner_app: Starlette, count: int) -> Callable[[], bool]:
    """``count`` requests have reached Ollama or wait in the runner's queue."""
    return lambda: len(fake.recorder.prompts) + _queued(runner_app) >= count


def _queued(runner_app: Starlette) -> int:
    """How many wait for the slot in the (in-process) runner."""
    return int(runner_app.state.runner.slot.waiting_here)


async def test_full_queue_ollama_client_gets_503(
    fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: ChatSettings
) -> None:
    fake.faults.token_delay_s = 0.2
    runner_app = runner_app_for(fake, dataclasses.replace(runner_settings, max_queue=1))
    async with (
        chat_app_over(runner_app, chat_settings) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://chat.test") as http,
    ):
        held = [asyncio.create_task(http.post("/chat", json={"prompt": f"h{i}"})) for i in range(2)]
        await eventually(lambda: fake.recorder.active == 1 and _queued(runner_app) == 1)
        with pytest.raises(ollama.ResponseError) as refused:
            await ollama_client(app).chat(model="tinyllama", messages=USER)
        raw = await http.post("/api/generate", json={"model": "tinyllama", "prompt": "x", "stream": False})
        await asyncio.gather(*held)
    assert refused.value.status_code == 503
    assert "queue is full" in refused.value.error
    assert raw.status_code == 503
    assert int(raw.headers["retry-after"]) >= 1
    assert set(raw.json()) == {"error"}
    assert isinstance(raw.json()["error"], str)


class ArrivalLog:
    """Records when each request reached chat and what chat answered (status, Retry-After)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.seen: list[tuple[float, int, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.monotonic()

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start" and scope["path"] == "/v1/chat/completions":
                headers = dict((k.decode(), v.decode()) for k, v in message["headers"])
                self.seen.append((arrived, message["status"], headers.get("retry-after")))
            await send(message)

        await self.app(scope, receive, record)


async def test_full_queue_openai_client_retries_after_our_retry_after(
    fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: ChatSettings, api_key: str
) -> None:
    fake.faults.token_delay_s = 0.4  # ~1.2 s per generation
    runner_app = runner_app_for(fake, dataclasses.replace(runner_settings, max_queue=1, generation_estimate_s=1.0))
    async with chat_app_over(runner_app, chat_settings) as app:
        log = ArrivalLog(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://chat.test") as http:
            held = [asyncio.create_task(http.post("/chat", json={"prompt": f"h{i}"})) for i in range(2)]
            await eventually(lambda: fake.recorder.active == 1 and _queued(runner_app) == 1)
            async with openai_client(log, api_key, max_retries=3) as client:
                completion = await client.chat.completions.create(model="tinyllama", messages=USER)
            await asyncio.gather(*held)
    assert completion.choices[0].message.content
    first, *retries = log.seen
    assert first[1] == 503
    assert first[2] is not None
    retry_after = int(first[2])
    # Where it would have stood: next (another caller's turn comes before h1), after h0's ~1 s left;
    # whole seconds, at least 1 — longer than the openai client's own first backoff (at most 0.5 s).
    assert retry_after >= 1
    # The client waited what we asked before trying again, and got through.
    assert retries
    assert retries[0][0] - first[0] >= retry_after
    assert log.seen[-1][1] == 200


async def test_metadata_is_cached_and_shared(fake: FakeOllama, chat_app: Starlette) -> None:
    client = ollama_client(chat_app)
    answers = await asyncio.gather(*(client.list() for _ in range(20)))
    assert all(a == answers[0] for a in answers)
    assert fake.recorder.metadata_calls == ["/api/tags"]  # one call to Ollama for twenty clients


async def test_on_aws_metadata_comes_from_settings_without_invoking_the_runner(
    fake: FakeOllama, runner_app: Starlette, chat_settings: ChatSettings
) -> None:
    settings = dataclasses.replace(chat_settings, runner_function="runner", allowed_models=("tinyllama", "llama3.2"))
    app = create_chat_app(settings, runner_transport=httpx.MockTransport(_no_invoke))
    async with AppClient(app, base_url="http://chat.test") as http:
        tags = (await http.get("/api/tags")).json()
        version = (await http.get("/api/version")).json()
        models = (await http.get("/v1/models")).json()
    assert [m["name"] for m in tags["models"]] == ["tinyllama:latest", "llama3.2:latest"]
    assert version == {"version": "unknown"}
    assert [m["id"] for m in models["data"]] == ["tinyllama:latest", "llama3.2:latest"]


def _no_invoke(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the runner was invoked for {request.url.path}")


class Challenged(ServiceError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat", {"error": {"code": "unauthorized", "message": "No key.", "request_id": "r1"}}),
        ("/api/chat", {"error": "No key."}),
        (
            "/v1/chat/completions",
            {"error": {"message": "No key.", "type": "authentication_error", "param": None, "code": "unauthorized"}},
        ),
    ],
)
def test_any_service_error_renders_in_the_route_dialect_with_its_headers(path: str, body: dict[str, Any]) -> None:
    async def endpoint(request: Request) -> None:
        raise Challenged("No key.")

    app = Starlette(
        routes=[Route(path, endpoint)],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers=dict(exception_handlers_for(error_renderer)),
    )
    response = TestClient(app).get(path, headers={"X-Request-ID": "r1"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == body


async def test_keys_guard_every_route_that_names_a_model(
    fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: ChatSettings
) -> None:
    fake.models = {"tinyllama", "llama3.2"}
    settings = dataclasses.replace(chat_settings, auth="required", allowed_models=("tinyllama", "llama3.2"))
    key, record = new_api_key("narrow", now=time.time(), models=["llama3.2"])
    await key_store(settings.state).add(record)
    async with chat_app_over(runner_app_for(fake, runner_settings), settings) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://chat.test") as http:
            anonymous = {path: await http.get(path) for path in ("/api/tags", "/v1/models", "/", "/api/version")}
            pull = await http.post("/api/pull", json={"model": "x"})
        tags = await ollama.AsyncClient(
            host="http://chat.test", transport=httpx.ASGITransport(app), headers={"Authorization": f"Bearer {key}"}
        ).list()
        async with openai_client(app, key) as client:
            models = [m.id async for m in client.models.list()]
            with pytest.raises(openai.PermissionDeniedError):
                await client.chat.completions.create(model="tinyllama", messages=USER)
    assert anonymous["/api/tags"].status_code == 401
    assert anonymous["/api/tags"].headers["www-authenticate"] == "Bearer"
    assert isinstance(anonymous["/api/tags"].json()["error"], str)
    assert anonymous["/v1/models"].status_code == 401
    assert anonymous["/v1/models"].json()["error"]["code"] == "unauthorized"
    assert (anonymous["/"].status_code, anonymous["/api/version"].status_code, pull.status_code) == (200, 200, 403)
    assert [m.model for m in tags.models] == ["llama3.2:latest"]  # only what the key allows
    assert models == ["llama3.2:latest"]

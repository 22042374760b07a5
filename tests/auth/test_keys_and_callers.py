"""Callers: each way to present a key, each refusal, and the modes of AUTH, through the real chat and runner."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from servicekit.state.factory import StateSettings
from starlette.applications import Starlette

from tests.auth.helpers import add_key, keys
from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient

PROMPT = {"prompt": "hi"}


def chat_at(runner_app: Starlette, settings: ChatSettings, base_url: str = "http://chat.test") -> AppClient:
    app = create_chat_app(settings, runner_transport=httpx.ASGITransport(runner_app))
    return AppClient(app, behind=[runner_app], base_url=base_url)


@pytest.fixture
def required(chat_settings: ChatSettings) -> ChatSettings:
    # A cache of 0 s: every request sees the store as it is now (the TTL has its own test).
    return dataclasses.replace(chat_settings, auth="required", key_cache_ttl_s=0)


@pytest.fixture
async def chat(runner_app: Starlette, required: ChatSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with chat_at(runner_app, required) as client:
        yield client


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


async def test_no_key_is_401_with_www_authenticate(chat: httpx.AsyncClient, fake: FakeOllama) -> None:
    response = await chat.post("/chat", json=PROMPT)
    assert_unauthorized(response)
    assert "Authorization: Bearer" in response.json()["error"]["message"]
    assert fake.recorder.prompts == []


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
async def test_a_valid_key_in_either_header_is_served(
    chat: httpx.AsyncClient, state_settings: StateSettings, header: str
) -> None:
    key = add_key(state_settings, "alice")
    value = f"Bearer {key}" if header == "Authorization" else key
    response = await chat.post("/chat", json=PROMPT, headers={header: value})
    assert response.status_code == 200, response.text
    assert response.json()["response"]


async def test_unknown_malformed_and_revoked_keys_are_the_same_401(
    chat: httpx.AsyncClient, state_settings: StateSettings
) -> None:
    key = add_key(state_settings, "bob")
    assert keys(state_settings, "revoke", "bob")[0] == 0
    unknown = "oc-" + "A" * 43
    answers = [
        await chat.post("/chat", json=PROMPT, headers={"Authorization": f"Bearer {value}"})
        for value in (key, unknown, "not-a-key", "")
    ]
    for response in answers:
        assert_unauthorized(response)
    # Never say whether a key exists: revoked, unknown and malformed read the same.
    assert len({r.json()["error"]["message"] for r in answers}) == 1


async def test_a_model_outside_the_keys_list_is_403(
    runner_app: Starlette, required: ChatSettings, state_settings: StateSettings
) -> None:
    settings = dataclasses.replace(required, allowed_models=("tinyllama", "llama3.2"))
    key = add_key(state_settings, "narrow", "--models", "llama3.2")
    headers = {"Authorization": f"Bearer {key}"}
    async with chat_at(runner_app, settings) as chat:
        forbidden = await chat.post("/chat", json=PROMPT, headers=headers)  # the default model, tinyllama
        unknown = await chat.post("/chat", json={**PROMPT, "model": "gpt-9"}, headers=headers)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "model_forbidden"
    assert "llama3.2" in forbidden.json()["error"]["message"]
    # A model not served at all stays 404, and lists only what this key may use.
    assert unknown.status_code == 404
    assert "tinyllama" not in unknown.json()["error"]["message"]


async def test_public_routes_need_no_key(chat: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await chat.get(path)).status_code == 200, path
    assert_unauthorized(await chat.get("/v1/jobs"))
    assert_unauthorized(await chat.post("/v1/jobs", json=PROMPT))
    assert_unauthorized(await chat.get("/v1/jobs/" + "0" * 32))


async def test_required_with_no_key_yet_starts_and_says_how_to_make_one(
    runner_app: Starlette, required: ChatSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="chat"):
        async with chat_at(runner_app, required) as chat:
            assert_unauthorized(await chat.post("/chat", json=PROMPT))
    assert any("python -m chat.keys add" in r.getMessage() for r in caplog.records)


# -- AUTH unset (auto) and off ------------------------------------------------------------------


async def test_auto_is_open_on_loopback_until_a_key_exists(
    runner_app: Starlette, required: ChatSettings, state_settings: StateSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(required, auth="auto")
    with caplog.at_level("WARNING", logger="chat"):
        async with chat_at(runner_app, settings, base_url="http://127.0.0.1:8000") as chat:
            assert (await chat.post("/chat", json=PROMPT)).status_code == 200
            add_key(state_settings, "first")
            assert_unauthorized(await chat.post("/chat", json=PROMPT))
    assert any("no API key exists yet" in r.getMessage() for r in caplog.records)


async def test_auto_requires_a_key_on_any_other_address(runner_app: Starlette, required: ChatSettings) -> None:
    settings = dataclasses.replace(required, auth="auto")
    async with chat_at(runner_app, settings, base_url="http://192.0.2.10:8000") as chat:
        assert_unauthorized(await chat.post("/chat", json=PROMPT))


async def test_off_serves_without_a_key_ignores_a_wrong_one_and_honours_a_valid_one(
    runner_app: Starlette, required: ChatSettings, state_settings: StateSettings
) -> None:
    key = add_key(state_settings, "someone")
    async with chat_at(runner_app, dataclasses.replace(required, auth="off")) as chat:
        assert (await chat.post("/chat", json=PROMPT)).status_code == 200
        # What OpenAI clients send when there is no key to send.
        assert (await chat.post("/chat", json=PROMPT, headers={"Authorization": "Bearer unused"})).status_code == 200
        # A valid key names its caller: its job is not the anonymous address's.
        created = await chat.post("/v1/jobs", json=PROMPT, headers={"X-API-Key": key})
        assert (await chat.get(created.headers["location"], headers={"X-API-Key": key})).status_code == 200
        assert (await chat.get(created.headers["location"])).status_code == 404


async def test_revocation_applies_once_the_cache_ttl_has_passed(
    runner_app: Starlette, chat_settings: ChatSettings, state_settings: StateSettings
) -> None:
    now = [1000.0]
    settings = dataclasses.replace(chat_settings, auth="required", key_cache_ttl_s=5)
    key = add_key(state_settings, "carol")
    headers = {"Authorization": f"Bearer {key}"}
    async with chat_at(runner_app, settings) as chat:
        auth = chat._transport.app.state.auth  # type: ignore[attr-defined]
        auth._clock = lambda: now[0]
        assert (await chat.post("/chat", json=PROMPT, headers=headers)).status_code == 200
        assert keys(state_settings, "revoke", "carol")[0] == 0
        now[0] += 4.9  # still cached
        assert (await chat.post("/chat", json=PROMPT, headers=headers)).status_code == 200
        now[0] += 0.2  # past KEY_CACHE_TTL_S
        assert_unauthorized(await chat.post("/chat", json=PROMPT, headers=headers))


async def test_trusted_proxy_headers_name_the_caller_by_the_last_hop(
    runner_app: Starlette, required: ChatSettings
) -> None:
    settings = dataclasses.replace(required, auth="off", trust_proxy_headers=True)
    async with chat_at(runner_app, settings) as chat:
        first = {"X-Forwarded-For": "203.0.113.7, 198.51.100.1"}
        second = {"X-Forwarded-For": "203.0.113.7, 198.51.100.2"}
        created = await chat.post("/v1/jobs", json=PROMPT, headers=first)
        assert created.status_code == 202
        job = created.headers["location"]
        assert (await chat.get(job, headers=first)).status_code == 200
        # The same client behind another last hop is another caller: the last hop is what the
        # trusted proxy saw; anything before it is what the client claims.
        assert (await chat.get(job, headers=second)).status_code == 404

"""The official clients with AUTH=required: a Bearer key is served, a missing or wrong one is their own 401."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest
from chat.settings import Settings as ChatSettings
from servicekit.state.factory import StateSettings
from starlette.applications import Starlette

from tests.dialects.conftest import add_key, chat_app_over, openai_client

QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]


async def test_ollama_client_with_and_without_a_key(
    runner_app: Starlette, chat_settings: ChatSettings, state_settings: StateSettings
) -> None:
    key = await add_key(state_settings)
    async with chat_app_over(runner_app, chat_settings, auth="required", key_cache_ttl_s=0) as app:
        keyed = ollama.AsyncClient(
            host="http://chat.test", transport=httpx.ASGITransport(app), headers={"Authorization": f"Bearer {key}"}
        )
        bare = ollama.AsyncClient(host="http://chat.test", transport=httpx.ASGITransport(app))
        try:
            reply = await keyed.chat(model="tinyllama", messages=QUESTION)
            assert reply.message.content
            assert [m.model for m in (await keyed.list()).models] == ["tinyllama:latest"]
            with pytest.raises(ollama.ResponseError) as refused:
                await bare.chat(model="tinyllama", messages=QUESTION)
            assert refused.value.status_code == 401
            with pytest.raises(ollama.ResponseError) as listing:
                await bare.list()
            assert listing.value.status_code == 401
        finally:
            await keyed._client.aclose()
            await bare._client.aclose()


async def test_openai_client_with_a_key_and_with_a_wrong_one(
    runner_app: Starlette, chat_settings: ChatSettings, state_settings: StateSettings
) -> None:
    key = await add_key(state_settings)
    async with (
        chat_app_over(runner_app, chat_settings, auth="required", key_cache_ttl_s=0) as app,
        openai_client(app, key) as keyed,
        openai_client(app, "oc-" + "x" * 43, max_retries=0) as wrong,
    ):
        completion = await keyed.chat.completions.create(model="tinyllama", messages=QUESTION)  # type: ignore[arg-type]
        assert completion.choices[0].message.content
        with pytest.raises(openai.AuthenticationError) as refused:
            await wrong.chat.completions.create(model="tinyllama", messages=QUESTION)  # type: ignore[arg-type]
        assert refused.value.status_code == 401
        assert refused.value.response.headers["www-authenticate"] == "Bearer"

"""Jobs belong to the caller that created them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from servicekit.state.factory import StateSettings
from starlette.applications import Starlette

from tests.auth.helpers import add_key
from tests.inprocess import AppClient


@pytest.fixture
async def chat(runner_app: Starlette, chat_settings: ChatSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = dataclasses.replace(chat_settings, auth="required", key_cache_ttl_s=0)
    app = create_chat_app(settings, runner_transport=httpx.ASGITransport(runner_app))
    async with AppClient(app, behind=[runner_app], base_url="http://chat.test") as client:
        yield client


def bearer(state: StateSettings, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {add_key(state, name)}"}


async def test_another_caller_cannot_read_or_cancel_a_job(
    chat: httpx.AsyncClient, state_settings: StateSettings
) -> None:
    alice, bob = bearer(state_settings, "alice"), bearer(state_settings, "bob")
    created = await chat.post("/v1/jobs", json={"prompt": "mine"}, headers=alice)
    assert created.status_code == 202
    location = created.headers["location"]
    for response in (await chat.get(location, headers=bob), await chat.delete(location, headers=bob)):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"
    assert (await chat.get(location, headers=alice)).status_code == 200


async def test_the_same_idempotency_key_from_two_callers_is_two_jobs(
    chat: httpx.AsyncClient, state_settings: StateSettings
) -> None:
    alice, bob = bearer(state_settings, "alice"), bearer(state_settings, "bob")
    body = {"prompt": "Write an essay about the sea."}
    first = await chat.post("/v1/jobs", json=body, headers={**alice, "Idempotency-Key": "essay-42"})
    other = await chat.post("/v1/jobs", json=body, headers={**bob, "Idempotency-Key": "essay-42"})
    again = await chat.post("/v1/jobs", json=body, headers={**alice, "Idempotency-Key": "essay-42"})
    assert first.json()["id"] != other.json()["id"]
    assert "idempotent-replayed" not in other.headers
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_caller_lists_only_its_own_jobs_newest_first_in_pages(
    chat: httpx.AsyncClient, state_settings: StateSettings
) -> None:
    alice, bob = bearer(state_settings, "alice"), bearer(state_settings, "bob")
    mine = [(await chat.post("/v1/jobs", json={"prompt": f"a{i}"}, headers=alice)).json()["id"] for i in range(5)]
    await chat.post("/v1/jobs", json={"prompt": "b"}, headers=bob)

    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await chat.get("/v1/jobs", params=params, headers=alice)).json()
        assert len(page["jobs"]) <= 2
        seen += [job["id"] for job in page["jobs"]]
        assert all(set(job) == {"id", "status", "created_at"} for job in page["jobs"])
        after = page["next_after"]
        if after is None:
            break
    assert seen == list(reversed(mine))


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "after=nope"])
async def test_bad_list_parameters_are_422(chat: httpx.AsyncClient, state_settings: StateSettings, query: str) -> None:
    response = await chat.get(f"/v1/jobs?{query}", headers=bearer(state_settings, "alice"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"

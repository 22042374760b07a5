"""The official ``ollama`` and ``openai`` clients pointed at the real chat app, in-process.

Both clients take a transport: ``httpx.ASGITransport`` for ollama (httpx) and
``httpx2.ASGITransport`` for openai (which is built on httpx2). The apps' lifespans run through
:class:`tests.inprocess.AppClient`, as a server would run them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import ollama
import openai
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from servicekit.state.factory import StateSettings, key_store
from servicekit.state.keys import new_api_key
from starlette.applications import Starlette
from starlette.types import ASGIApp

from tests.inprocess import AppClient

ChatApps = Callable[..., Any]


@asynccontextmanager
async def chat_app_over(runner_app: Starlette, settings: ChatSettings, **overrides: Any) -> AsyncIterator[Starlette]:
    """The chat app over ``runner_app``, both lifespans running."""
    app = create_chat_app(dataclasses.replace(settings, **overrides), runner_transport=httpx.ASGITransport(runner_app))
    async with AppClient(app, behind=[runner_app], base_url="http://chat.test"):
        yield app


def ollama_client(app: Starlette) -> ollama.AsyncClient:
    return ollama.AsyncClient(host="http://chat.test", transport=httpx.ASGITransport(app))


def openai_client(app: ASGIApp, key: str, **options: Any) -> openai.AsyncOpenAI:
    """The openai client always sends its key, and chat checks any key it is sent: a real one."""
    http_client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="http://chat.test")
    return openai.AsyncOpenAI(base_url="http://chat.test/v1", api_key=key, http_client=http_client, **options)


async def add_key(state: StateSettings, name: str = "tester") -> str:
    key, record = new_api_key(name, now=time.time())
    await key_store(state).add(record)
    return key


@pytest.fixture
async def api_key(state_settings: StateSettings) -> str:
    return await add_key(state_settings)


@pytest.fixture
async def chat_app(runner_app: Starlette, chat_settings: ChatSettings) -> AsyncIterator[Starlette]:
    async with chat_app_over(runner_app, chat_settings) as app:
        yield app


@pytest.fixture
async def ollama_chat(chat_app: Starlette) -> AsyncIterator[ollama.AsyncClient]:
    client = ollama_client(chat_app)
    yield client
    await client._client.aclose()


@pytest.fixture
async def openai_chat(chat_app: Starlette, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(chat_app, api_key) as client:
        yield client

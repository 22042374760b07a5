"""Start the pieces a benchmark measures, each in its own process, as they run in production."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from servicekit.state.factory import StateSettings, key_store
from servicekit.state.keys import new_api_key

from tests.servers import fake_ollama_process, free_port, uvicorn_process


@dataclass(frozen=True)
class Stack:
    ollama_url: str
    runner_url: str
    chat_url: str
    runner_pid: int
    chat_pid: int
    headers: dict[str, str]  # what a caller of chat sends: its API key
    runner_headers: dict[str, str]  # what chat sends the runner: RUNNER_TOKEN


async def bench_key(state_dir: str) -> str:
    """A key for the benchmark's caller, stored where chat reads keys."""
    key, record = new_api_key("bench", now=time.time())
    await key_store(StateSettings(directory=state_dir)).add(record)
    return key


@contextmanager
def fake_ollama(token_delay_s: float = 0.0, tokens: int = 3) -> Iterator[str]:
    port = free_port()
    with fake_ollama_process(port, token_delay_s, tokens):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def stack(
    lock_dir: Path, *, runner_workers: int = 1, token_delay_s: float = 0.0, max_queue: int = 64
) -> Iterator[Stack]:
    with ExitStack() as stack_:
        ollama_url = stack_.enter_context(fake_ollama(token_delay_s))
        state_dir = str(lock_dir / f"bench-state-{free_port()}")  # the lock goes in it (LOCK_PATH's default)
        # As deployed: chat requires a key, the runner requires chat's token.
        # stack() is entered from inside the bench's event loop: make the key on a loop of its own.
        with ThreadPoolExecutor(1) as pool:
            key = pool.submit(asyncio.run, bench_key(state_dir)).result()
        token = secrets.token_urlsafe(32)
        # Every bench client uses the one bench key: never capped before the queue is full.
        runner_env = {
            "OLLAMA_HOST": ollama_url,
            "STATE_DIR": state_dir,
            "MAX_QUEUE": str(max_queue),
            "MAX_WAITING_PER_CALLER": str(max_queue + 1),
            "RUNNER_TOKEN": token,
        }
        runner_url, runner = stack_.enter_context(
            uvicorn_process(
                "runner", "runner.app:app", runner_env, extra_args=("--workers", str(runner_workers), "--no-access-log")
            )
        )
        chat_url, chat = stack_.enter_context(
            uvicorn_process(
                "chat",
                "chat.app:app",
                {"RUNNER_URL": runner_url, "STATE_DIR": state_dir, "RUNNER_TOKEN": token, "AUTH": "required"},
                extra_args=("--no-access-log",),
            )
        )
        yield Stack(
            ollama_url,
            runner_url,
            chat_url,
            runner.pid,
            chat.pid,
            {"Authorization": f"Bearer {key}"},
            {"Authorization": f"Bearer {token}"},
        )

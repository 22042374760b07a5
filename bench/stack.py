"""Start the pieces a benchmark measures, each in its own process, as they run in production."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import REPO, free_port, service_env, uvicorn_process, wait_until_up


@dataclass(frozen=True)
class Stack:
    ollama_url: str
    runner_url: str
    chat_url: str
    runner_pid: int
    chat_pid: int


@contextmanager
def fake_ollama(token_delay_s: float = 0.0, tokens: int = 3) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-m", "tests.fake_ollama", "--port", str(port),
        "--token-delay-s", str(token_delay_s), "--tokens", str(tokens),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, env=service_env({}))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/api/version", process=process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def stack(
    lock_dir: Path, *, runner_workers: int = 1, token_delay_s: float = 0.0, max_queue: int = 64
) -> Iterator[Stack]:
    with ExitStack() as stack_:
        ollama_url = stack_.enter_context(fake_ollama(token_delay_s))
        state_dir = str(lock_dir / f"bench-state-{free_port()}")  # the lock goes in it (LOCK_PATH's default)
        runner_env = {"OLLAMA_HOST": ollama_url, "STATE_DIR": state_dir, "MAX_QUEUE": str(max_queue)}
        runner_url, runner = stack_.enter_context(
            uvicorn_process(
                "runner", "runner.app:app", runner_env, extra_args=("--workers", str(runner_workers), "--no-access-log")
            )
        )
        chat_url, chat = stack_.enter_context(
            uvicorn_process(
                "chat",
                "chat.app:app",
                {"RUNNER_URL": runner_url, "STATE_DIR": state_dir},
                extra_args=("--no-access-log",),
            )
        )
        yield Stack(ollama_url, runner_url, chat_url, runner.pid, chat.pid)

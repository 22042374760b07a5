"""Real servers on loopback for tests: an ASGI app under uvicorn in a thread, or uvicorn processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

from tests.waiting import until

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout_s: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once ``url`` answers; raise RuntimeError at once if ``process`` exits first."""

    def up() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            httpx.get(url, timeout=0.5)
        except httpx.HTTPError:
            return False
        return True

    until(up, timeout_s=timeout_s, what=f"{url} answering")


@contextmanager
def serve_in_thread(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a background thread; yields its base URL."""
    port = port or free_port()
    # lifespan "auto": an app that has one closes its clients when the server stops.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: server.started or not thread.is_alive(), what="the test server starting")
        if not server.started:
            raise RuntimeError("the test server did not start")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def service_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "RUNNER_", "CHAT_"))}
    env.update(extra)
    return env


@contextmanager
def uvicorn_process(
    app_dir: str, app: str, env: Mapping[str, str], port: int | None = None, extra_args: tuple[str, ...] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``uvicorn --app-dir functions/<app_dir> <app>`` as the README does; yields (url, process)."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(REPO / "functions" / app_dir),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra_args,
    ]
    process = subprocess.Popen(command, env=service_env(env), cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process=process)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()  # uvicorn stops its workers on SIGTERM
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def fake_ollama_process(port: int, token_delay_s: float, tokens: int) -> Iterator[subprocess.Popen[bytes]]:
    """``tests.fake_ollama`` as a process of its own on ``port`` (killed on exit, if still running)."""
    command = [
        sys.executable,
        "-m",
        "tests.fake_ollama",
        "--port",
        str(port),
        "--token-delay-s",
        str(token_delay_s),
        "--tokens",
        str(tokens),
    ]
    process = subprocess.Popen(command, cwd=REPO, env=service_env({}))
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/version", process=process)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()

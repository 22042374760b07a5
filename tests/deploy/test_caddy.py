"""deploy/Caddyfile with a real Caddy (Debian's package) on loopback, in front of a real chat.

`make test` installs the package (see the Makefile); a machine without it fails here, loudly.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings

from tests.fake_ollama import FakeOllama
from tests.servers import REPO, free_port, serve_in_thread, wait_until_up

pytestmark = pytest.mark.slow
CADDYFILE = REPO / "deploy" / "Caddyfile"
READ_HEADER_TIMEOUT_S = 1.0
SLOW_CLIENTS = 100


def caddy() -> str:
    path = shutil.which("caddy")
    if path is None:
        pytest.fail("caddy is not installed: `make test` installs Debian's package (apt-get install -y caddy)")
    return path


def caddy_env(tmp_path: Path, **values: str) -> dict[str, str]:
    # Caddy keeps certificates and autosaved config under XDG dirs: keep them in the test's tmp.
    return {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "HOME": str(tmp_path),
        **values,
    }


@pytest.mark.parametrize("site", ["", "chat.example.com"])
def test_the_caddyfile_validates(tmp_path: Path, site: str) -> None:
    env = caddy_env(tmp_path, SITE_ADDRESS=site) if site else caddy_env(tmp_path)
    result = subprocess.run(
        [caddy(), "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stderr + result.stdout


@pytest.fixture
def front(tmp_path: Path, runner_settings: RunnerSettings, chat_settings: ChatSettings) -> Iterator[str]:
    """Caddy on a loopback port, proxying to chat (a real uvicorn server) over a runner and a fake Ollama."""
    runner = create_runner_app(runner_settings, ollama_transport=httpx.ASGITransport(FakeOllama().app))
    chat = create_chat_app(chat_settings, runner_transport=httpx.ASGITransport(runner))
    port = free_port()
    with serve_in_thread(chat) as chat_url:
        env = caddy_env(
            tmp_path,
            SITE_ADDRESS=f"http://127.0.0.1:{port}",
            BIND_ADDRESS="127.0.0.1",
            UPSTREAM=chat_url.removeprefix("http://"),
            READ_HEADER_TIMEOUT=f"{READ_HEADER_TIMEOUT_S:g}s",
            READ_BODY_TIMEOUT="5s",
        )
        command = [caddy(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until_up(url + "/healthz", process=process)
            except RuntimeError:
                raise AssertionError(process.stderr.read().decode() if process.stderr else "caddy exited") from None
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()


def test_a_request_through_caddy_reaches_chat(front: str) -> None:
    reply = httpx.post(front + "/chat", json={"prompt": "through the front"}, timeout=10)
    assert reply.status_code == 200
    assert reply.json()["response"] == "through the front "  # the fake echoes 3 tokens
    with httpx.stream("POST", front + "/chat", json={"prompt": "a b c", "stream": True}, timeout=10) as stream:
        assert stream.headers["content-type"] == "application/x-ndjson"
        lines = list(stream.iter_lines())
    assert '"done":true' in lines[-1]


def test_slowloris_connections_are_closed_within_the_header_timeout(front: str) -> None:
    """100 clients that never finish their headers, each sending a header line every 0.2 s."""
    port = int(front.rsplit(":", 1)[1])
    selector = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /chat HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        opened[sock] = time.monotonic()
    closed_after: list[float] = []
    deadline = time.monotonic() + READ_HEADER_TIMEOUT_S + 10
    next_drip = time.monotonic()
    try:
        while opened and time.monotonic() < deadline:
            if time.monotonic() >= next_drip:  # keep trickling, as slowloris does
                for slow in list(opened):
                    with contextlib.suppress(OSError):
                        slow.send(b"X-Slow: 1\r\n")
                next_drip = time.monotonic() + 0.2
            for key, _ in selector.select(timeout=0.05):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                sock = ready
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data or b"\r\n\r\n" in data:  # closed, or answered (408) before closing
                    closed_after.append(time.monotonic() - opened.pop(sock))
                    selector.unregister(sock)
                    sock.close()
    finally:
        for sock in opened:
            sock.close()
        selector.close()
    print(f"slowloris through caddy: {len(closed_after)}/{SLOW_CLIENTS} closed; max {max(closed_after or [0]):.2f} s")
    assert len(closed_after) == SLOW_CLIENTS, f"{len(opened)} slow connections were still open"
    # Closed by the header timeout (plus scheduling slack), not by the test's deadline.
    assert max(closed_after) < READ_HEADER_TIMEOUT_S + 2


def test_oversized_headers_are_refused(front: str) -> None:
    reply = httpx.get(front + "/healthz", headers={"X-Big": "a" * 64 * 1024}, timeout=10)
    assert reply.status_code == 431
    assert httpx.get(front + "/healthz", headers={"X-Small": "a" * 1024}, timeout=10).status_code == 200


def test_bodies_over_the_limit_are_refused_at_the_edge(front: str) -> None:
    reply = httpx.post(front + "/chat", content=b"x" * (2 * 1024 * 1024), timeout=10)
    assert reply.status_code == 413

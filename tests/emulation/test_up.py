"""``python -m local up`` as a real subprocess on free ports: ready, real answers, one at a time, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.observe.helpers import samples, value
from tests.servers import REPO, free_port, service_env
from tests.waiting import until

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def survivors(family: set[int], grace_s: float = 5.0) -> list[int]:
    """The processes of ``family`` still alive after a short grace (a loaded machine reaps slowly)."""
    with contextlib.suppress(AssertionError):  # the caller says who survived
        until(lambda: not any(alive(pid) for pid in family), timeout_s=grace_s)
    return [pid for pid in family if alive(pid)]


@contextmanager
def local_up(env: dict[str, str], ready_timeout_s: float = 90) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "local", "up"],
        cwd=REPO,
        env=service_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + ready_timeout_s
    try:
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        lines.extend(process.stdout.read().splitlines(keepends=True))
        process.stdout.close()


def _ports() -> dict[str, str]:
    return {"OLLAMA_PORT": str(free_port()), "RUNNER_PORT": str(free_port()), "CHAT_PORT": str(free_port())}


async def test_up_serves_real_answers_one_at_a_time_and_stops_cleanly(tmp_path: Path) -> None:
    ports = _ports()
    env = {**ports, "STATE_DIR": str(tmp_path / "state"), "RUNNER_WORKERS": "2"}
    with local_up(env) as (process, lines):
        output = "".join(lines)
        assert "ready:" in output, output
        chat = f"http://127.0.0.1:{ports['CHAT_PORT']}"
        assert f"curl -s {chat}/chat" in output
        family = descendants(process.pid)
        async with httpx.AsyncClient(base_url=chat, timeout=120) as client:
            first = await client.post("/chat", json={"prompt": "Why is the sky blue?", "options": {"num_predict": 16}})
            assert first.status_code == 200, first.text
            assert first.json()["model"] == "smollm2:135m"
            assert len(first.json()["response"].strip()) > 0
            # 1 running + 8 waiting: one caller's MAX_WAITING_PER_CALLER.
            burst = await asyncio.gather(
                *(client.post("/chat", json={"prompt": f"Say {i}.", "options": {"num_predict": 8}}) for i in range(9))
            )
            stats = (await client.get(f"http://127.0.0.1:{ports['OLLAMA_PORT']}/_local/stats")).json()
            job = await client.post("/v1/jobs", json={"prompt": "Say hi.", "options": {"num_predict": 4}})
            assert job.status_code == 202, job.text
            # Loopback, no key made yet: /metrics is open, and adds up both runner workers.
            scraped = await client.get("/metrics")
    output = "".join(lines)
    state = tmp_path / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in state.iterdir() if not p.is_dir()}
    assert {"state.db", "runner.lock"} <= set(modes), modes
    assert set(modes.values()) == {0o600}, modes
    directories = [p for p in state.rglob("*") if p.is_dir()]
    assert {p.name for p in directories} == {"metrics", "runner"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in directories} == {0o700}
    assert scraped.status_code == 200, scraped.text
    found = samples(scraped.text)
    assert value(found, "ollama_chat_generation_seconds_count", model="smollm2:135m") == 10
    assert value(found, "ollama_chat_tokens_per_second_count", model="smollm2:135m") == 10
    assert [r.status_code for r in burst] == [200] * 9, [r.text for r in burst if r.status_code != 200]
    assert stats["peak"] == 1
    assert stats["generations"] >= 10, stats
    assert process.returncode == 0, output[-3000:]
    assert len(family) >= 4, family  # model server, runner supervisor + 2 workers, chat
    assert await asyncio.to_thread(survivors, family) == [], output[-3000:]
    assert "ollama | serving smollm2:135m" in output  # each service's lines carry its name
    assert "up     | stopping" in output


def test_up_refuses_a_state_dir_others_can_write(tmp_path: Path) -> None:
    shared = tmp_path / "state"
    shared.mkdir()
    shared.chmod(0o777)
    env = service_env({**_ports(), "LOCAL_ENGINE": "echo", "STATE_DIR": str(shared)})
    result = subprocess.run(
        [sys.executable, "-m", "local", "up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "cannot start: STATE_DIR" in result.stdout
    assert "writable by other users" in result.stdout


def test_up_names_a_port_that_is_taken() -> None:
    ports = _ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(ports["CHAT_PORT"])))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "local", "up"],
            cwd=REPO,
            env=service_env({**ports, "LOCAL_ENGINE": "echo"}),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {ports['CHAT_PORT']} (CHAT_PORT) is already in use" in result.stdout


def test_up_stops_everything_when_one_service_dies(tmp_path: Path) -> None:
    ports = _ports()
    env = {**ports, "LOCAL_ENGINE": "echo", "STATE_DIR": str(tmp_path / "state"), "RUNNER_WORKERS": "1"}
    with local_up(env) as (process, lines):
        assert "ready:" in "".join(lines)
        family = descendants(process.pid)
        runner_flag = f"--port\0{ports['RUNNER_PORT']}\0"
        runner = min(pid for pid in family if runner_flag in Path(f"/proc/{pid}/cmdline").read_text())
        os.kill(runner, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == 1
    assert "runner exited with code -9; stopping the others" in "".join(lines)
    assert survivors(family) == []


def test_up_uses_an_ollama_that_already_answers(tmp_path: Path) -> None:
    from local.ollama.echo_engine import EchoEngine
    from local.ollama.server import create_app
    from tests.servers import serve_in_thread

    with serve_in_thread(create_app(EchoEngine(name="llama3.2"))) as ollama_url:
        ports = _ports()
        env = {
            **ports,
            "OLLAMA_HOST": ollama_url,
            "DEFAULT_MODEL": "llama3.2",
            "STATE_DIR": str(tmp_path / "s"),
            "RUNNER_WORKERS": "1",
        }
        with local_up(env) as (_, lines):
            output = "".join(lines)
            assert f"using the Ollama that answers at {ollama_url}" in output
            assert "starting the embedded model server" not in output
            reply = httpx.post(f"http://127.0.0.1:{ports['CHAT_PORT']}/chat", json={"prompt": "via yours"}, timeout=30)
    assert reply.status_code == 200
    assert reply.json()["response"] == "via yours "
    assert reply.json()["model"] == "llama3.2"


def test_up_refuses_an_ollama_without_the_default_model(tmp_path: Path) -> None:
    from local.ollama.echo_engine import EchoEngine
    from local.ollama.server import create_app
    from tests.servers import serve_in_thread

    with serve_in_thread(create_app(EchoEngine(name="llama3.2"))) as ollama_url:
        ports = _ports()
        env = {
            **ports,
            "OLLAMA_HOST": ollama_url,
            "DEFAULT_MODEL": "tinyllama",
            "LOCK_PATH": str(tmp_path / "l"),
            "RUNNER_WORKERS": "1",
        }
        result = subprocess.run(
            [sys.executable, "-m", "local", "up"],
            cwd=REPO,
            env=service_env(env),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stdout
    assert "ready:" not in result.stdout
    assert f"the Ollama at {ollama_url} does not have the model 'tinyllama'" in result.stdout
    assert "pull it with `ollama pull tinyllama`, or set DEFAULT_MODEL to one it has (llama3.2)" in result.stdout

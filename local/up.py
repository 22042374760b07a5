"""``python -m local up`` (what ``make up`` runs): the whole stack on this machine, no Docker, no Ollama install.

Starts the model server (unless an Ollama already answers at ``OLLAMA_HOST``), the runner
(``RUNNER_WORKERS`` uvicorn workers sharing one lock) and chat; waits for each to be ready;
prints the URLs and a curl to paste; prefixes every log line with its service's name; stops
everything on Ctrl-C or SIGTERM, and stops the rest when one of them dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from chat.settings import DEFAULT_MODEL as CHAT_DEFAULT_MODEL
from runner.settings import parse_ollama_host
from servicekit.config import ConfigError, env_int, env_str
from servicekit.state.factory import StateSettings, key_store
from servicekit.state.statedir import open_private, private_dir

REPO = Path(__file__).resolve().parent.parent
# `local up` keeps its state in the checkout (git-ignored) unless STATE_DIR says otherwise.
LOCAL_STATE_DIR = REPO / ".state"
RUNNER_TOKEN_FILE = "runner-token"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"{'up':<7}| {message}", flush=True)


def _die_with_parent() -> None:
    # If `up` itself is killed outright, the kernel sends the children SIGTERM (Linux).
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    pumps: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        pump = threading.Thread(target=self._pump, daemon=True)
        pump.start()
        self.pumps.append(pump)

    def _pump(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            print(f"{self.name:<7}| {raw.decode(errors='replace').rstrip()}", flush=True)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_ready(child: Child | None, url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if child is not None and (code := child.exited()) is not None:
            raise StartupError(f"{child.name} exited with code {code} while starting")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise StartupError(f"{url} was not ready after {timeout_s:g} s ({last})")


def require_model(ollama_url: str, model: str) -> None:
    """Fail now, saying how to pull it, when Ollama lacks the model chat would send requests to."""
    listed = httpx.get(f"{ollama_url}/api/tags", timeout=5).json().get("models") or []
    names = {str(m.get("name", "")) for m in listed}
    if model in names or f"{model}:latest" in names:
        return
    has = ", ".join(sorted(names)) or "none"
    raise StartupError(
        f"the Ollama at {ollama_url} does not have the model '{model}': pull it with `ollama pull {model}`, "
        f"or set DEFAULT_MODEL to one it has ({has})"
    )


def ollama_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/version", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Plan:
    bind: str
    ollama_port: int
    runner_port: int
    chat_port: int
    workers: int
    external_ollama: str | None
    state_dir: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Plan:
        ollama_port = env_int(env, "OLLAMA_PORT", 11434, minimum=1)
        host = env_str(env, "OLLAMA_HOST", "")
        probe = parse_ollama_host(host) if host else f"http://127.0.0.1:{ollama_port}"
        return cls(
            bind=env_str(env, "LOCAL_BIND", "127.0.0.1"),
            ollama_port=ollama_port,
            runner_port=env_int(env, "RUNNER_PORT", 8080, minimum=1),
            chat_port=env_int(env, "CHAT_PORT", 8000, minimum=1),
            workers=env_int(env, "RUNNER_WORKERS", 2, minimum=1),
            external_ollama=probe if ollama_answers(probe) else None,
            state_dir=env_str(env, "STATE_DIR", str(LOCAL_STATE_DIR)),
        )


def uvicorn_command(function: str, port: int, bind: str, workers: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(REPO / "functions" / function),
        f"{function}.app:app",
        "--host",
        bind,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        # uvicorn's access log costs measurable time on every request (bench/); errors still log.
        "--no-access-log",
    ]


def write_runner_token(state_dir: Path, token: str) -> None:
    fd = open_private(state_dir / RUNNER_TOKEN_FILE, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")


def start_stack(plan: Plan, env: dict[str, str], children: list[Child]) -> str:
    """Start every service in order, ready one before the next; returns chat's URL."""
    wanted = [("CHAT_PORT", plan.chat_port), ("RUNNER_PORT", plan.runner_port)]
    if plan.external_ollama is None:
        wanted.append(("OLLAMA_PORT", plan.ollama_port))
    for variable, port in wanted:
        if not port_free(plan.bind, port):
            raise StartupError(f"port {port} ({variable}) is already in use: stop what uses it, or set {variable}")

    # Created private (0700) here, before any service starts; refused if shared or a link.
    state_dir = private_dir(plan.state_dir)
    say(f"state (jobs, keys, the runner's lock) in {state_dir}")
    # A fresh secret per run that only this chat and runner know: nothing else on the host can
    # call the runner directly and skip chat's keys and limits. Kept (0600) in STATE_DIR for
    # `local invoke` and for a developer who calls the runner by hand.
    token = env.get("RUNNER_TOKEN") or secrets.token_urlsafe(32)
    write_runner_token(state_dir, token)
    base = {**env, "PYTHONUNBUFFERED": "1", "STATE_DIR": str(state_dir), "RUNNER_TOKEN": token}
    # Metric samples of every process (chat's, and the runner workers' below them), emptied
    # each run; chat's GET /metrics adds them up.
    metrics_dir = state_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    private_dir(metrics_dir / "runner")
    if plan.external_ollama:
        ollama_url = plan.external_ollama
        say(f"using the Ollama that answers at {ollama_url}")
        model = env_str(env, "DEFAULT_MODEL", CHAT_DEFAULT_MODEL)
        require_model(ollama_url, model)
        models = {"DEFAULT_MODEL": model}
    else:
        ollama_url = f"http://127.0.0.1:{plan.ollama_port}"
        say(f"starting the embedded model server (LOCAL_ENGINE={env.get('LOCAL_ENGINE', 'llama')}) on {ollama_url}")
        ollama = Child(
            "ollama",
            [sys.executable, "-m", "local", "ollama", "--host", plan.bind],
            {**base, "OLLAMA_PORT": str(plan.ollama_port)},
        )
        children.append(ollama)
        ollama.start()
        wait_ready(ollama, f"{ollama_url}/api/version")
        model = httpx.get(f"{ollama_url}/api/tags", timeout=5).json()["models"][0]["name"]
        say(f"loading {model} ...")
        httpx.post(f"{ollama_url}/api/generate", json={"model": model}, timeout=READY_TIMEOUT_S)
        models = {"DEFAULT_MODEL": model, "ALLOWED_MODELS": model}

    runner_url = f"http://127.0.0.1:{plan.runner_port}"
    say(f"starting the runner ({plan.workers} worker{'s' if plan.workers > 1 else ''}) on {runner_url}")
    runner = Child(
        "runner",
        uvicorn_command("runner", plan.runner_port, plan.bind, plan.workers),
        {
            **base,
            "OLLAMA_HOST": ollama_url,
            "DEFAULT_MODEL": models["DEFAULT_MODEL"],
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir / "runner"),
        },
    )
    children.append(runner)
    runner.start()
    wait_ready(runner, f"{runner_url}/readyz")

    chat_url = f"http://127.0.0.1:{plan.chat_port}"
    say(f"starting chat on {chat_url}")
    chat = Child(
        "chat",
        uvicorn_command("chat", plan.chat_port, plan.bind),
        {**base, "RUNNER_URL": runner_url, **models, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )
    children.append(chat)
    chat.start()
    wait_ready(chat, f"{chat_url}/readyz")
    return chat_url


def supervise(children: list[Child], stop: threading.Event) -> int:
    while not stop.wait(0.2):
        for child in children:
            if (code := child.exited()) is not None:
                say(f"{child.name} exited with code {code}; stopping the others")
                return 1
    say("stopping")
    return 0


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    children: list[Child] = []
    try:
        plan = Plan.from_env(os.environ)
        chat_url = start_stack(plan, dict(os.environ), children)
        say("ready:")
        say(f"  chat    {chat_url}  (POST /chat, GET /readyz, GET /openapi.json)")
        keys_exist = asyncio.run(key_store(StateSettings(directory=plan.state_dir)).any_active())
        curl = f"curl -s {chat_url}/chat -H 'Content-Type: application/json'"
        if keys_exist:  # chat needs one now (see README, Keys and callers)
            curl += ' -H "Authorization: Bearer $KEY"'
        say(f'  {curl} -d \'{{"prompt": "Why is the sky blue?"}}\'')
        add = f"STATE_DIR={shlex.quote(plan.state_dir)} {shlex.quote(sys.executable)} -m chat.keys add NAME"
        say(
            f"  API keys exist: put yours in KEY; another with: {add}"
            if keys_exist
            else f"  no API key needed until one exists; make one (and require them) with: {add}"
        )
        say(f"  or open {chat_url}/ in a browser: the chat page")
        say("Ctrl-C stops everything.")
        return supervise(children, stop)
    except (StartupError, ConfigError) as exc:
        say(f"cannot start: {exc}")
        return 1
    finally:
        for child in reversed(children):
            child.stop()

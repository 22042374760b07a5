"""OpenAI's API through chat, and (when installed) LiteLLM's proxy, against the same fake Ollama.

Both are measured as chat's own API is: what they add over calling the fake Ollama's
``/api/chat`` directly, non-streamed (latency) and streamed (time to the first line).
LiteLLM is optional: ``LITELLM_BIN`` names its ``litellm`` command (installed in a throwaway
virtualenv, never in ours: it brings a hundred packages); without it its row says so.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.measure import Latency, first_byte_ms, median, sequential_ms
from tests.servers import free_port, service_env, wait_until_up

MESSAGES = [{"role": "user", "content": "hi"}]
DIRECT = {"model": "tinyllama", "messages": MESSAGES, "stream": False}
OPENAI = {"model": "tinyllama", "messages": MESSAGES}


@dataclass(frozen=True)
class Overhead:
    added_p50_ms: float
    added_first_byte_p50_ms: float


async def openai_overhead(client: httpx.AsyncClient, ollama_url: str, base_url: str, count: int) -> Overhead:
    """One round: ``base_url``'s /v1/chat/completions over the fake's /api/chat, whole and streamed."""
    direct = Latency.of(await sequential_ms(client, f"{ollama_url}/api/chat", DIRECT, count))
    chain = Latency.of(await sequential_ms(client, f"{base_url}/v1/chat/completions", OPENAI, count))
    direct_fb = Latency.of(
        await first_byte_ms(client, f"{ollama_url}/api/chat", {**DIRECT, "stream": True}, count // 4)
    )
    chain_fb = Latency.of(
        await first_byte_ms(client, f"{base_url}/v1/chat/completions", {**OPENAI, "stream": True}, count // 4)
    )
    return Overhead(chain.p50 - direct.p50, chain_fb.p50 - direct_fb.p50)


def medians(rounds: list[Overhead]) -> Overhead:
    return Overhead(median([r.added_p50_ms for r in rounds]), median([r.added_first_byte_p50_ms for r in rounds]))


def litellm_bin() -> str | None:
    return os.environ.get("LITELLM_BIN") or shutil.which("litellm")


@contextmanager
def litellm_proxy(ollama_url: str, master_key: str) -> Iterator[str]:
    """LiteLLM's proxy serving ``tinyllama`` from the fake Ollama (its ``ollama_chat`` provider)."""
    command = litellm_bin()
    assert command is not None
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: tinyllama\n"
            "    litellm_params:\n"
            "      model: ollama_chat/tinyllama\n"
            f"      api_base: {ollama_url}\n"
        )
        # Its model price list from its own package, not the network; no telemetry.
        # (It refuses to start without a master key: the bench sends it as a Bearer token.)
        env = service_env(
            {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_MASTER_KEY": master_key}
        )
        process = subprocess.Popen(
            [command, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{url}/health/liveliness", timeout_s=120, process=process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


async def litellm_overhead(ollama_url: str, rounds: int, count: int) -> Overhead | None:
    if litellm_bin() is None:
        return None
    master_key = f"sk-{secrets.token_hex(16)}"
    with litellm_proxy(ollama_url, master_key) as url:
        async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {master_key}"}) as client:
            await openai_overhead(client, ollama_url, url, 50)  # warm up
            results = [await openai_overhead(client, ollama_url, url, count) for _ in range(rounds)]
    return medians(results)

"""The settle's cost: how long Ollama sits idle after a dropped request before the next one reaches it.

One runner process, a fake Ollama streaming a token every ``token_delay_s``. Each request is
dropped a few tokens into its generation while the next one already waits; the fake records the
gap between the dropped generation's last token and the next generation's start. With the settle
that gap is about ``SETTLE_FACTOR`` x one token interval, less the time the fake took to notice;
the peak concurrency must stay 1.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench.stack import stack


async def settle_after_drops(drops: int, token_delay_s: float) -> tuple[list[float], list[float], int]:
    """(idle gaps at Ollama after each drop in ms, drop-to-next-request times in ms, peak concurrency)."""
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp), token_delay_s=token_delay_s) as s:
        url = f"{s.runner_url}/v1/run/tinyllama"
        stats_url = f"{s.ollama_url}/_fake/stats"
        async with httpx.AsyncClient(timeout=30, headers=s.runner_headers) as client, httpx.AsyncClient() as probe:
            await client.post(url, json={"prompt": "warm"})  # the runner's Ollama client is ready
            await probe.post(f"{s.ollama_url}/_fake/reset", params={"tokens": 1000})

            def ask() -> asyncio.Task[httpx.Response]:
                return asyncio.create_task(client.post(url, json={"prompt": "dropped"}))

            async def until_started(count: int) -> float:
                while (await probe.get(stats_url)).json()["started"] < count:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.001)
                return time.perf_counter()

            handoffs: list[float] = []
            current = ask()
            await until_started(1)
            for served in range(1, drops + 1):
                following = ask()
                await asyncio.sleep(token_delay_s * 4.5)  # a few tokens in, between two of them
                current.cancel()  # the client hangs up
                dropped_at = time.perf_counter()
                await asyncio.gather(current, return_exceptions=True)
                handoffs.append((await until_started(served + 1) - dropped_at) * 1000)
                current = following
            current.cancel()
            await asyncio.gather(current, return_exceptions=True)
            await asyncio.sleep(token_delay_s * 3)
            stats = (await probe.get(stats_url)).json()
    return stats["gaps_ms"], handoffs, int(stats["peak"])

"""Measurements: sequential latency, and concurrent bursts whose handoff gaps the fake Ollama records."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Latency:
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, samples_ms: list[float]) -> Latency:
        return cls(percentile(samples_ms, 50), percentile(samples_ms, 95), percentile(samples_ms, 99))


async def sequential_ms(client: httpx.AsyncClient, url: str, body: dict[str, Any], count: int) -> list[float]:
    """Latency of ``count`` requests sent one after another on one kept-alive connection."""
    samples: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.post(url, json=body)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return samples


async def first_byte_ms(client: httpx.AsyncClient, url: str, body: dict[str, Any], count: int) -> list[float]:
    """Time to the first streamed line, ``count`` times in a row."""
    samples: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        first: float | None = None
        async with client.stream("POST", url, json=body) as response:
            async for _line in response.aiter_lines():
                first = first or time.perf_counter()  # read to the end: keep the connection reusable
        if first is None:
            raise RuntimeError(f"{url} streamed nothing")
        samples.append((first - started) * 1000)
    return samples


@dataclass(frozen=True)
class Burst:
    wall_s: float
    statuses: dict[int, int]


async def burst(
    url: str, body: dict[str, Any], clients: int, per_client: int, headers: dict[str, str] | None = None
) -> Burst:
    """``clients`` virtual users, one connection each, each sending ``per_client`` requests back to back."""
    statuses: dict[int, int] = {}
    # Built before the clock starts: an httpx client costs tens of ms of CPU to create (its SSL
    # context), which would otherwise be measured and steal a core from the servers.
    users = [
        httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=1), headers=headers) for _ in range(clients)
    ]

    async def user(client: httpx.AsyncClient) -> None:
        for _ in range(per_client):
            response = await client.post(url, json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(user(client) for client in users))
        wall_s = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in users))
    return Burst(wall_s, statuses)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")

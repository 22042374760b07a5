"""Polling a job until it reaches a status, for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx


async def wait_for(
    client: httpx.AsyncClient, job_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is still {job['status']} after {timeout_s} s: {job}")
        await asyncio.sleep(0.02)


def status_is(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda job: job["status"] in statuses


async def eventually(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait until ``condition()`` holds (polling), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout_s} s")
        await asyncio.sleep(0.01)

"""Polling a job until it reaches a status, for tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.waiting import eventually


async def wait_for(
    client: httpx.AsyncClient, job_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = 10
) -> dict[str, Any]:
    """The job, once ``until(job)`` holds."""
    seen: list[dict[str, Any]] = []

    async def reached() -> bool:
        response = await client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        seen[:] = [response.json()]
        return until(seen[0])

    try:
        await eventually(reached, timeout_s=timeout_s, what=f"the status wanted of job {job_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: it is {seen[0]['status']}: {seen[0]}") from None
    return seen[0]


def status_is(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda job: job["status"] in statuses

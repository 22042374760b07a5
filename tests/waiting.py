"""Wait for a condition, never for a fixed time: the tests' one polling loop."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import httpx

POLL_S = 0.005  # short beside anything the tests wait for; every condition is cheap to ask


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout_s: float = 10.0, what: str = "the condition"
) -> None:
    """Return as soon as ``condition()`` holds; fail after ``timeout_s``.

    The condition may be a coroutine function (a request to ask), or a plain one: a counter of a
    fake served in another thread, which no asyncio.Event could signal.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        await asyncio.sleep(POLL_S)


def until(condition: Callable[[], bool], *, timeout_s: float = 10.0, what: str = "the condition") -> None:
    """:func:`eventually` for code that cannot await (a browser driven synchronously, a subprocess's files)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        time.sleep(POLL_S)


async def queue_depth(client: httpx.AsyncClient, url: str = "") -> int:
    """How many requests wait in the host's queue: chat's /readyz says it under "runner"; a runner's
    (``url``), at its top."""
    ready = (await client.get(f"{url}/readyz")).json()
    return int(ready["runner"]["queue_depth"] if "runner" in ready else ready["queue_depth"])


async def until_waiting(client: httpx.AsyncClient, depth: int, *, url: str = "", timeout_s: float = 10.0) -> None:
    """Wait until ``depth`` requests wait in the host's queue (see :func:`queue_depth`)."""

    async def reached() -> bool:
        return await queue_depth(client, url) == depth

    await eventually(reached, timeout_s=timeout_s, what=f"a queue of {depth}")

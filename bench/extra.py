"""Overload (the 503 path), cold start, memory, and the slot's own handoff (no HTTP in between)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from bench.measure import percentile
from tests.servers import REPO, free_port, service_env, wait_until_up


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child in (Path("/proc") / str(parent) / "task" / str(parent) / "children").read_text().split():
            found.append(int(child))
            frontier.append(int(child))
    return found


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    match = re.search(r"VmHWM:\s+(\d+) kB", (Path("/proc") / str(pid) / "status").read_text())
    return int(match[1]) / 1024 if match else float("nan")


def python_processes(pid: int) -> list[int]:
    """A uvicorn master and its workers (the workers do the work; the master only supervises)."""
    return [pid, *descendants(pid)]


async def overload(
    url: str, body: Mapping[str, object], clients: int, seconds: float, headers: Mapping[str, str] | None = None
) -> tuple[float, float, dict[int, int]]:
    """Rejections per second and their median latency, with ``clients`` connections hammering ``url``."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def user() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url, json=body) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    if response.status == 503:
                        assert int(response.headers["Retry-After"]) >= 1
                        latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return statuses.get(503, 0) / elapsed, percentile(latencies, 50) if latencies else float("nan"), statuses


def import_ms(module: str, runs: int = 5, extra_env: Mapping[str, str] | None = None) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"
    path = os.pathsep.join(str(REPO / p) for p in ("functions/chat", "functions/runner", "layers/servicekit"))
    env = service_env({"PYTHONPATH": path, **(extra_env or {})})
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=tempfile.gettempdir(),
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(samples)


def first_response_ms(function: str, env: dict[str, str], runs: int = 3) -> float:
    """From spawning ``uvicorn <function>.app:app`` to its first 200 on /healthz."""
    samples = []
    for _ in range(runs):
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(REPO / "functions" / function),
            f"{function}.app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        started = time.perf_counter()
        process = subprocess.Popen(command, env=service_env(env), cwd=REPO)
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz", process=process)
            samples.append((time.perf_counter() - started) * 1000)
        finally:
            process.terminate()
            process.wait(timeout=10)
    return statistics.median(samples)


def _slot_process(lock: str, generations: int, hold_s: float, start_at: float) -> list[tuple[float, float]]:
    """One 'runner process': ``generations`` waiters on its own slot over the shared lock file and queue."""
    from runner.hostlock import FileHostLock
    from runner.slot import GenerationSlot
    from servicekit.callers import Caller
    from servicekit.queue.model import QueueLimits
    from servicekit.queue.sqlite_store import SqliteQueueStore
    from servicekit.state.sqlite import StateDatabase

    async def run() -> list[tuple[float, float]]:
        limits = QueueLimits(max_queue=10_000, max_waiting_per_caller=10_000, batch_max_wait_s=120, lease_s=5)
        queue = SqliteQueueStore(StateDatabase(Path(lock).parent / "state"), limits)
        slot = GenerationSlot(FileHostLock(lock), queue, poll_interval_s=0.001)
        slot.start()
        marks: list[tuple[float, float]] = []

        async def waiter(index: int) -> None:
            async with slot.place(Caller(f"c{index % 4}"), "interactive", "bench") as place:
                await slot.wait(place, 120)
                entered = time.monotonic()
                await asyncio.sleep(hold_s)
                marks.append((entered, time.monotonic()))

        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        await asyncio.gather(*(waiter(index) for index in range(generations)))
        await slot.aclose()
        return marks

    return asyncio.run(run())


def slot_handoff_ms(processes: int, generations: int = 60, hold_s: float = 0.005) -> tuple[float, float]:
    """Median and p95 gap between one holder leaving the slot and the next entering it, no HTTP at all,
    across ``processes`` real processes (CLOCK_MONOTONIC is shared by every process)."""
    import multiprocessing

    with tempfile.TemporaryDirectory() as tmp, multiprocessing.get_context("spawn").Pool(processes) as pool:
        lock = str(Path(tmp) / "slot.lock")
        start_at = time.monotonic() + 1.5  # every process imported and waiting by then
        results = pool.starmap(_slot_process, [(lock, generations // processes, hold_s, start_at)] * processes)
    marks = sorted(mark for result in results for mark in result)
    overlaps = [b for a, b in itertools.pairwise(marks) if b[0] < a[1]]
    if overlaps:
        raise RuntimeError(f"two holders at once: {overlaps[:3]}")
    gaps = [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(marks)]
    return statistics.median(gaps), percentile(gaps, 95)

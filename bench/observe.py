"""The cost of observing a request: ObserveRequests with the JSON log line and the Prometheus families.

Driven in-process (no HTTP): the same tiny Starlette app with and without the middleware, the
difference of the medians is the cost per request. The observed app's endpoint also reports a
grant and a release of the slot, as the runner's slot does for every generation (the wait by
class, slot_busy). Multiprocess mode (every sample written to an mmap'ed file) runs in a child
process, since prometheus_client reads PROMETHEUS_MULTIPROC_DIR at import.

The queue's depth and oldest age cost nothing per request: ``/metrics`` reads them from the
store when scraped (:func:`queue_scrape_ms`, with a full queue).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from servicekit.observe.logs import RequestLog, formatter_for
from servicekit.observe.metrics import PrometheusMetrics, exposition, queue_gauges
from servicekit.observe.middleware import ObserveRequests
from servicekit.observe.queue import queue_measures
from servicekit.observe.record import record_of
from servicekit.queue.model import NewTicket, QueueLimits
from servicekit.queue.sqlite_store import SqliteQueueStore
from servicekit.state.sqlite import StateDatabase
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.measure import percentile

FINAL = {
    "model": "tinyllama",
    "prompt_eval_count": 7,
    "eval_count": 3,
    "total_duration": 60_000_000,
    "load_duration": 1_000_000,
    "prompt_eval_duration": 4_000_000,
    "eval_duration": 50_000_000,
}


async def _reply(request: Request) -> Response:
    record_of(request.scope).note_generation("tinyllama", FINAL, 0.1)
    return JSONResponse({"response": "a b c"})


def _app(observed: bool) -> Starlette:
    if not observed:
        return Starlette(routes=[Route("/chat", _reply, methods=["POST"])])
    log = RequestLog("bench", log_format="json", content=False)
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the bench)
    handler.setFormatter(formatter_for("json"))
    log.logger.handlers, log.logger.propagate = [handler], False
    metrics = PrometheusMetrics()

    async def reply_holding_the_slot(request: Request) -> Response:
        metrics.slot_granted("interactive", 0.1)
        try:
            return await _reply(request)
        finally:
            metrics.slot_released()

    middleware = [Middleware(ObserveRequests, service="bench", observers=[log, metrics])]
    return Starlette(routes=[Route("/chat", reply_holding_the_slot, methods=["POST"])], middleware=middleware)


async def _per_request_us(app: Starlette, rounds: int) -> list[float]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    samples = []
    for _ in range(rounds):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/chat",
            "raw_path": b"/chat",
            "query_string": b"",
            "headers": [],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
        }
        started = time.perf_counter()
        await app(scope, receive, send)
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def observe_cost_us(rounds: int = 20_000) -> tuple[float, float]:
    """(p50 of the observed app - p50 of the bare one, p99 difference), microseconds, in this process."""
    bare, observed = _app(False), _app(True)
    await _per_request_us(bare, 1000)  # warm up
    await _per_request_us(observed, 1000)
    bare_us, observed_us = await _per_request_us(bare, rounds), await _per_request_us(observed, rounds)
    return (
        percentile(observed_us, 50) - percentile(bare_us, 50),
        percentile(observed_us, 99) - percentile(bare_us, 99),
    )


def observe_cost_multiprocess_us(rounds: int = 20_000) -> tuple[float, float]:
    """The same, in a child process with PROMETHEUS_MULTIPROC_DIR set (samples in mmap'ed files)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tmp}
        out = subprocess.run(
            [sys.executable, "-m", "bench.observe", str(rounds)], env=env, capture_output=True, text=True, check=True
        ).stdout
    p50, p99 = json.loads(out)
    return float(p50), float(p99)


async def queue_scrape_ms(waiting: int = 64, rounds: int = 200) -> float:
    """p50 of reading a queue of ``waiting`` tickets (MAX_QUEUE's default: a full queue) from SQLite and
    writing its gauges as /metrics text: what each scrape adds for the queue."""
    with tempfile.TemporaryDirectory() as tmp:
        limits = QueueLimits(max_queue=waiting, max_waiting_per_caller=waiting, batch_max_wait_s=120, lease_s=600)
        store = SqliteQueueStore(StateDatabase(Path(tmp) / "state"), limits)
        now = time.time()
        for index in range(waiting):
            ticket: NewTicket = {
                "id": f"t{index}",
                "caller": f"c{index % 8}",
                "weight": 1,
                "model": "tinyllama",
                "ticket_class": "interactive" if index % 4 else "batch",
                "holder": "bench",
                "job_id": None,
            }
            await store.enqueue(ticket, max_waiting=None, now=now)
        metrics = PrometheusMetrics()
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            now = time.time()
            exposition(metrics, "", queue_gauges(queue_measures(await store.snapshot(now=now), now=now)))
            samples.append((time.perf_counter() - started) * 1000)
        return percentile(samples, 50)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(observe_cost_us(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))))

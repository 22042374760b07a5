"""The runner's ASGI app: ``POST /v1/run/{model}``, ``POST /v1/jobs/{id}/run``, ``GET /healthz``, ``GET /readyz``.

``app`` is built from the environment at import: one Ollama client and one slot per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from servicekit.body import read_json_object
from servicekit.callers import caller_of
from servicekit.disconnect import CancelOnDisconnect
from servicekit.errors import (
    JobNotFound,
    NotReady,
    ServiceError,
    UpstreamError,
    error_envelope,
    exception_handlers,
)
from servicekit.generation import parse_generation_request
from servicekit.jobs.model import is_job_id
from servicekit.jobs.store import JobStore
from servicekit.queue.model import Standing
from servicekit.queue.store import QueueStore
from servicekit.requestid import RequestIdMiddleware, request_id_of
from servicekit.state.factory import job_store as build_job_store
from servicekit.state.factory import queue_store as build_queue_store
from servicekit.streaming import STREAM_HEADERS, ChunkStream, json_line
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from runner.budget import Budget
from runner.guard import ChatOnly, startup_notice
from runner.hostlock import FileHostLock, HostLock
from runner.jobs import JobRunner
from runner.models import ModelCheck
from runner.ollama import OllamaClient, PreparedGeneration
from runner.settings import Settings
from runner.slot import GenerationSlot, Place
from runner.wire import RunReply, chunk_text, done_of, ollama_request, timings_of, usage_of

# Under Lambda, stop waiting for the slot (and a job's generation) this long before the
# invocation would be killed.
LAMBDA_DEADLINE_MARGIN_S = 1.0
logger = logging.getLogger("runner")
JOB_TOO_LONG = "the runner function's timeout (900 s on AWS) bounds a job; ask for fewer tokens (options.num_predict)"


QUEUE_POSITION_HEADER = "X-Queue-Position"
QUEUE_WAIT_HEADER = "X-Queue-Wait-Ms"


def queue_headers(position: int, queue_ms: float) -> dict[str, str]:
    """Where a request stood when it joined the queue (0: it ran at once), and how long it waited."""
    return {QUEUE_POSITION_HEADER: str(position), QUEUE_WAIT_HEADER: f"{queue_ms:.1f}"}


def queued_line(standing: Standing) -> bytes:
    """A waiting stream's progress line: ``{"queued": {"position": 3, "eta_s": 12.5}}``."""
    return json_line({"queued": {"position": standing.position, "eta_s": round(standing.eta_s, 1)}})


def lambda_time_left_s(scope: Scope) -> float | None:
    """Under Lambda, the time this invocation may still use (its remaining time less a margin)."""
    context = scope.get("aws.context")
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return None
    return max(0.0, float(remaining_ms()) / 1000 - LAMBDA_DEADLINE_MARGIN_S)


def queue_timeout_s(settings: Settings, scope: Scope) -> float:
    """QUEUE_TIMEOUT_S, but never past the Lambda invocation's remaining time."""
    left = lambda_time_left_s(scope)
    return settings.queue_timeout_s if left is None else min(settings.queue_timeout_s, left)


class Runner:
    """The endpoints, over one Ollama client and one slot."""

    def __init__(self, settings: Settings, ollama: OllamaClient, slot: GenerationSlot, jobs: JobRunner) -> None:
        self.settings = settings
        self.ollama = ollama
        self.models = ModelCheck(ollama)
        self.slot = slot
        self.jobs = jobs

    async def run(self, request: Request) -> Response:
        model = request.path_params["model"]
        data = await read_json_object(
            request, max_bytes=self.settings.max_body_bytes, timeout_s=self.settings.body_read_timeout_s
        )
        generation = parse_generation_request(data, max_prompt_chars=self.settings.max_prompt_chars)
        stream = generation.get("stream", False)
        prepared = self.ollama.prepare(*ollama_request(model, generation, stream=stream))
        budget = Budget.of(request)
        timeout_s = budget.cap(queue_timeout_s(self.settings, request.scope))
        caller = caller_of(request.scope)
        if not stream:
            async with self.slot.place(caller, "interactive", model) as place:
                grant = await self.slot.wait(place, timeout_s)
                final = await budget.run(self.ollama.generate(prepared))
            # Let the next waiter (granted the slot just now) send its request to Ollama before
            # this reply is encoded and written: the handoff gap is Ollama's idle time.
            await asyncio.sleep(0)
            reply: RunReply = {
                "model": model,
                "response": chunk_text(final),
                "done_reason": final.get("done_reason", "stop"),
                "usage": usage_of(final),
                "timings": timings_of(final, grant.queue_ms),
            }
            return JSONResponse(reply, headers=queue_headers(place.admitted.position, grant.queue_ms))

        # Streaming: everything that needs no slot is checked first (a refusal keeps its status);
        # then the status line goes out at once and the client hears its place while it waits.
        await self.models.require(model)
        async with AsyncExitStack() as stack:
            place = await stack.enter_async_context(self.slot.place(caller, "interactive", model))
            cleanup = stack.pop_all()
        lines = self._stream_lines(place, prepared, budget, timeout_s, cleanup, request_id_of(request.scope))
        return ChunkStream(
            lines,
            cleanup=cleanup,
            media_type="application/x-ndjson",
            headers={**STREAM_HEADERS, QUEUE_POSITION_HEADER: str(place.admitted.position)},
        )

    async def _stream_lines(
        self,
        place: Place,
        prepared: PreparedGeneration,
        budget: Budget,
        timeout_s: float,
        stack: AsyncExitStack,
        request_id: str,
    ) -> AsyncGenerator[bytes, None]:
        try:
            if place.grant is None:
                yield queued_line(place.standing)
                async for standing in self.slot.standings(place, timeout_s):
                    yield queued_line(standing)
                yield queued_line(Standing(position=0, eta_s=0.0, depth=0))
            assert place.grant is not None
            queue_ms = place.grant.queue_ms
            # Closed (by ChunkStream's cleanup) before the place, so before the slot is released.
            chunks = await budget.run(stack.enter_async_context(self.ollama.stream(prepared)))
            while True:
                # The budget bounds each wait for Ollama, never the writes to our client.
                try:
                    chunk = await budget.run(anext(chunks))
                except StopAsyncIteration:
                    break
                if chunk.get("done"):
                    yield json_line(done_of(chunk, queue_ms))
                    return
                text = chunk_text(chunk)
                if text:
                    yield json_line({"response": text})
            raise UpstreamError("Ollama ended the stream before the generation was done.")
        except ServiceError as exc:
            # The status line is long gone: the error is the stream's last line.
            yield json_line(error_envelope(exc, request_id))

    async def run_job(self, request: Request) -> Response:
        """Queue a stored job (a batch ticket that any runner holding the slot runs); inline on Lambda."""
        job_id = request.path_params["job_id"]
        now = time.time()
        job = await self.jobs.store.get(job_id, now=now) if is_job_id(job_id) else None
        if job is None:
            raise JobNotFound(f"There is no job {job_id}.")
        if job["status"] != "queued":  # a duplicate delivery: it ran, or it will not run
            return JSONResponse({"id": job_id, "status": job["status"]})
        caller = caller_of(request.scope)
        if "aws.context" in request.scope:
            # The invocation is the worker: end the job cleanly before Lambda would kill it.
            budget = Budget(lambda_time_left_s(request.scope), advice=JOB_TOO_LONG)
            wait_s = min(job["start_deadline"] - now, queue_timeout_s(self.settings, request.scope))
            status = await self.jobs.execute(job, caller, wait_s=wait_s, budget=budget)
            return JSONResponse({"id": job_id, "status": status or "skipped"})
        standing = await self.slot.enqueue_job(job_id, caller, job["model"])
        await self.jobs.store.set_queue_position(job_id, standing.position)
        return JSONResponse({"id": job_id, "status": "queued", "queue_position": standing.position}, status_code=202)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            version = await self.ollama.version()
            model = self.settings.ready_model
            if model and not await self.ollama.has_model(model):
                raise NotReady(
                    f"{self.ollama.name} does not have the model '{model}': pull it with `ollama pull {model}`."
                )
        except UpstreamError as exc:
            raise NotReady(f"Ollama is not ready: {exc.message}") from exc
        depth = (await self.slot.queue.snapshot(now=time.time())).depth_by_class()
        ready = {
            "status": "ok",
            "ollama_version": version,
            "queue_depth": sum(depth.values()),
            "queue": depth,
            "busy": self.slot.busy,
        }
        return JSONResponse({**ready, "model": model} if model else ready)


def create_app(
    settings: Settings,
    *,
    ollama_transport: httpx.AsyncBaseTransport | None = None,
    host_lock: HostLock | None = None,
    job_store: JobStore | None = None,
    queue_store: QueueStore | None = None,
) -> Starlette:
    ollama = OllamaClient(settings.ollama_url, timeout=settings.ollama_timeout, transport=ollama_transport)
    slot = GenerationSlot(
        host_lock or FileHostLock(settings.lock_path),
        queue_store or build_queue_store(settings.state, settings.queue_limits),
        poll_interval_s=settings.lock_poll_interval_s,
    )
    jobs = JobRunner(settings, job_store or build_job_store(settings.state), slot, ollama)
    slot.on_job = jobs.run_claimed
    runner = Runner(settings, ollama, slot, jobs)

    chat_only = [Middleware(ChatOnly, token=settings.runner_token)]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if (notice := startup_notice(settings.runner_token)) is not None:
            logger.warning(notice)
        slot.start()
        yield
        await slot.aclose()
        await jobs.aclose()
        await ollama.aclose()

    app = Starlette(
        routes=[
            Route("/v1/run/{model:path}", runner.run, methods=["POST"], middleware=chat_only),
            Route("/v1/jobs/{job_id}/run", runner.run_job, methods=["POST"], middleware=chat_only),
            Route("/healthz", runner.healthz, methods=["GET"]),
            Route("/readyz", runner.readyz, methods=["GET"]),
        ],
        middleware=[Middleware(RequestIdMiddleware), Middleware(CancelOnDisconnect)],
        exception_handlers=dict(exception_handlers),
        lifespan=lifespan,
    )
    app.state.runner = runner
    return app


app = create_app(Settings.from_env())

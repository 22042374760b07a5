"""The runner's ASGI app: ``POST /v1/run/{model}``, ``POST /v1/embed/{model}``, ``POST /v1/jobs/{id}/run``,
``GET|POST /v1/ollama/{tags,show,ps,version}`` (metadata, never queued), ``GET /healthz``, ``GET /readyz``.

``app`` is built from the environment at import: one Ollama client and one slot per process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import cast

import httpx
from servicekit.body import read_json_object
from servicekit.disconnect import CancelOnDisconnect
from servicekit.embedding import parse_embedding_request
from servicekit.errors import (
    JobNotFound,
    NotReady,
    RouteNotFound,
    ServiceError,
    UpstreamError,
    error_envelope,
    exception_handlers,
)
from servicekit.generation import parse_generation_request
from servicekit.jobs.model import is_job_id
from servicekit.jobs.store import JobStore
from servicekit.observe.metrics import PrometheusMetrics
from servicekit.observe.middleware import ObserveRequests, observers_for, prometheus_metrics
from servicekit.observe.record import RequestRecord, record_of
from servicekit.observe.settings import ObserveSettings
from servicekit.requestid import RequestIdMiddleware, request_id_of
from servicekit.state.factory import job_store as build_job_store
from servicekit.streaming import STREAM_HEADERS, ChunkStream, json_line
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from runner.budget import Budget
from runner.errors import QueueFull
from runner.guard import ChatOnly, startup_notice
from runner.hostlock import FileHostLock, HostLock
from runner.jobs import JobRunner
from runner.metadata import PATHS, MetadataCache, MetadataKind
from runner.ollama import OllamaClient
from runner.settings import Settings
from runner.slot import GenerationSlot, Ticket
from runner.wire import (
    EmbedReply,
    OllamaChunk,
    RunReply,
    StreamDelta,
    chunk_extras,
    chunk_text,
    done_of,
    ollama_embed_request,
    ollama_request,
    timings_of,
    usage_of,
)

# Under Lambda, stop waiting for the slot (and a job's generation) this long before the
# invocation would be killed.
LAMBDA_DEADLINE_MARGIN_S = 1.0
logger = logging.getLogger("runner")
JOB_TOO_LONG = "the runner function's timeout (900 s on AWS) bounds a job; ask for fewer tokens (options.num_predict)"


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

    def __init__(
        self,
        settings: Settings,
        ollama: OllamaClient,
        slot: GenerationSlot,
        jobs: JobRunner,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.ollama = ollama
        self.slot = slot
        self.jobs = jobs
        self.metadata_cache = MetadataCache(ollama)
        self.metrics = metrics

    @asynccontextmanager
    async def _holding(self, timeout_s: float) -> AsyncIterator[Ticket]:
        """The slot, with the slot_busy gauge up while it is held here."""
        async with self.slot.hold(timeout_s) as ticket:
            if self.metrics is None:
                yield ticket
                return
            self.metrics.slot_busy.set(1)
            try:
                yield ticket
            finally:
                self.metrics.slot_busy.set(0)

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
        record = record_of(request.scope)
        record.model, record.stream = model, stream
        if not stream:
            async with self._holding(timeout_s) as ticket:
                final = await budget.run(self.ollama.generate(prepared))
            record.note_generation(model, final, ticket.queue_ms)
            # Let the next waiter (granted the slot just now) send its request to Ollama before
            # this reply is encoded and written: the handoff gap is Ollama's idle time.
            await asyncio.sleep(0)
            reply: RunReply = {
                "model": model,
                "response": chunk_text(final),
                **chunk_extras(final),
                "done_reason": final.get("done_reason", "stop"),
                "usage": usage_of(final),
                "timings": timings_of(final, ticket.queue_ms),
            }
            return JSONResponse(reply, headers={"X-Queue-Wait-Ms": f"{ticket.queue_ms:.1f}"})

        # Streaming: take the slot and open Ollama's stream *before* answering, so a full
        # queue or an unknown model is still a proper status; both stay open until the
        # stream ends, and ChunkStream closes them whatever happens.
        async with AsyncExitStack() as stack:
            ticket = await stack.enter_async_context(self._holding(timeout_s))
            chunks = await budget.run(stack.enter_async_context(self.ollama.stream(prepared)))
            cleanup = stack.pop_all()
        lines = self._stream_lines(chunks, budget, ticket.queue_ms, request_id_of(request.scope), record)
        return ChunkStream(
            lines,
            cleanup=cleanup,
            media_type="application/x-ndjson",
            headers={**STREAM_HEADERS, "X-Queue-Wait-Ms": f"{ticket.queue_ms:.1f}"},
        )

    @staticmethod
    async def _stream_lines(
        chunks: AsyncIterator[OllamaChunk], budget: Budget, queue_ms: float, request_id: str, record: RequestRecord
    ) -> AsyncGenerator[bytes, None]:
        try:
            while True:
                # The budget bounds each wait for Ollama, never the writes to our client.
                try:
                    chunk = await budget.run(anext(chunks))
                except StopAsyncIteration:
                    break
                if chunk.get("done"):
                    record.note_generation(record.model, chunk, queue_ms)
                    yield json_line(done_of(chunk, queue_ms))
                    return
                delta: StreamDelta = {"response": chunk_text(chunk), **chunk_extras(chunk)}
                if delta["response"] or len(delta) > 1:
                    yield json_line(delta)
            raise UpstreamError("Ollama ended the stream before the generation was done.")
        except ServiceError as exc:
            # The status line is long gone: the error is the stream's last line.
            record.error_code = exc.code
            yield json_line(error_envelope(exc, request_id))

    async def embed(self, request: Request) -> Response:
        """Embeddings take the slot like a generation: the model runs either way."""
        model = request.path_params["model"]
        data = await read_json_object(
            request, max_bytes=self.settings.max_body_bytes, timeout_s=self.settings.body_read_timeout_s
        )
        embedding = parse_embedding_request(data, max_prompt_chars=self.settings.max_prompt_chars)
        prepared = self.ollama.prepare(*ollama_embed_request(model, embedding))
        budget = Budget.of(request)
        async with self._holding(budget.cap(queue_timeout_s(self.settings, request.scope))) as ticket:
            answer = await budget.run(self.ollama.embed(prepared))
        reply: EmbedReply = {
            "model": model,
            "embeddings": answer["embeddings"],
            "usage": {"prompt_tokens": int(answer.get("prompt_eval_count", 0)), "completion_tokens": 0},
            "timings": timings_of({**answer, "eval_count": 0}, ticket.queue_ms),  # type: ignore[typeddict-item]
        }
        return JSONResponse(reply, headers={"X-Queue-Wait-Ms": f"{ticket.queue_ms:.1f}"})

    async def metadata(self, request: Request) -> Response:
        """Ollama's own answer (status and body) to a metadata request, from a short cache; never queued."""
        kind = request.path_params["kind"]
        if kind not in PATHS:
            raise RouteNotFound(f"There is no route {request.url.path}.")
        body = None
        if request.method == "POST":
            body = await read_json_object(
                request, max_bytes=self.settings.max_body_bytes, timeout_s=self.settings.body_read_timeout_s
            )
        status, answer = await self.metadata_cache.get(cast(MetadataKind, kind), body)
        return JSONResponse(answer, status_code=status)

    async def run_job(self, request: Request) -> Response:
        """Run a stored job: inline on Lambda (the invocation is the worker), in the background elsewhere."""
        job_id = request.path_params["job_id"]
        now = time.time()
        job = await self.jobs.store.get(job_id, now=now) if is_job_id(job_id) else None
        if job is None:
            raise JobNotFound(f"There is no job {job_id}.")
        if job["status"] != "queued":  # a duplicate delivery: it ran, or it will not run
            return JSONResponse({"id": job_id, "status": job["status"]})
        wait_s = job["start_deadline"] - now
        if "aws.context" in request.scope:
            # The invocation is the worker: end the job cleanly before Lambda would kill it.
            budget = Budget(lambda_time_left_s(request.scope), advice=JOB_TOO_LONG)
            status = await self.jobs.execute(
                job_id, wait_s=min(wait_s, queue_timeout_s(self.settings, request.scope)), budget=budget
            )
            return JSONResponse({"id": job_id, "status": status or "skipped"})
        if self.slot.queue_depth >= self.settings.max_queue:
            raise QueueFull(
                f"The queue is full ({self.slot.queue_depth} waiting); try again later.",
                retry_after_s=self.slot.retry_after_s(self.slot.queue_depth),
                queue_depth=self.slot.queue_depth,
            )
        position = self.slot.queue_depth + (1 if self.slot.busy else 0)
        await self.jobs.store.set_queue_position(job_id, position)
        self.jobs.start_in_background(job_id, wait_s=wait_s)
        return JSONResponse({"id": job_id, "status": "queued", "queue_position": position}, status_code=202)

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
            if self.metrics is not None:
                self.metrics.ollama_up.set(0)
            raise NotReady(f"Ollama is not ready: {exc.message}") from exc
        if self.metrics is not None:
            self.metrics.ollama_up.set(1)
        ready = {
            "status": "ok",
            "ollama_version": version,
            "queue_depth": self.slot.queue_depth,
            "busy": self.slot.busy,
        }
        return JSONResponse({**ready, "model": model} if model else ready)


def create_app(
    settings: Settings,
    *,
    ollama_transport: httpx.AsyncBaseTransport | None = None,
    host_lock: HostLock | None = None,
    job_store: JobStore | None = None,
    observe: ObserveSettings | None = None,
    metrics: PrometheusMetrics | None = None,
) -> Starlette:
    observe = observe or ObserveSettings()
    metrics = metrics or prometheus_metrics(observe)
    ollama = OllamaClient(settings.ollama_url, timeout=settings.ollama_timeout, transport=ollama_transport)
    slot = GenerationSlot(
        host_lock or FileHostLock(settings.lock_path),
        max_queue=settings.max_queue,
        poll_interval_s=settings.lock_poll_interval_s,
        generation_estimate_s=settings.generation_estimate_s,
    )
    jobs = JobRunner(settings, job_store or build_job_store(settings.state), slot, ollama)
    runner = Runner(settings, ollama, slot, jobs, metrics)

    chat_only = [Middleware(ChatOnly, token=settings.runner_token)]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if (notice := startup_notice(settings.runner_token)) is not None:
            logger.warning(notice)
        yield
        await jobs.aclose()
        await ollama.aclose()

    app = Starlette(
        routes=[
            Route("/v1/run/{model:path}", runner.run, methods=["POST"], middleware=chat_only),
            Route("/v1/embed/{model:path}", runner.embed, methods=["POST"], middleware=chat_only),
            Route("/v1/ollama/{kind}", runner.metadata, methods=["GET", "POST"], middleware=chat_only),
            Route("/v1/jobs/{job_id}/run", runner.run_job, methods=["POST"], middleware=chat_only),
            Route("/healthz", runner.healthz, methods=["GET"]),
            Route("/readyz", runner.readyz, methods=["GET"]),
        ],
        middleware=[
            Middleware(ObserveRequests, service="runner", observers=observers_for("runner", observe, metrics)),
            Middleware(RequestIdMiddleware),
            Middleware(CancelOnDisconnect),
        ],
        exception_handlers=dict(exception_handlers),
        lifespan=lifespan,
    )
    app.state.runner = runner
    return app


app = create_app(Settings.from_env(), observe=ObserveSettings.from_env(os.environ))

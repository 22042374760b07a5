"""The runner's ASGI app: ``POST /v1/run/{model}``, ``POST /v1/embed/{model}``, ``POST /v1/jobs/{id}/run``,
``POST /v1/queue/drain`` (AWS: a kick), ``GET|POST /v1/ollama/{tags,show,ps,version}`` (metadata, never
queued), ``GET /healthz``, ``GET /readyz``.

``app`` is built from the environment at import: one Ollama client and one slot per process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import cast

import httpx
from servicekit.body import read_json_object
from servicekit.callers import caller_of
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
from servicekit.lambda_event import LambdaInvoker
from servicekit.observe.metrics import PrometheusMetrics
from servicekit.observe.middleware import ObserveRequests, observers_for, prometheus_metrics, slot_observer_for
from servicekit.observe.record import RequestRecord, record_of
from servicekit.observe.settings import ObserveSettings
from servicekit.queue.drain_lease import DRAIN_PATH, DrainLease
from servicekit.queue.model import Standing
from servicekit.queue.store import QueueStore
from servicekit.requestid import RequestIdMiddleware, request_id_of
from servicekit.state.factory import drain_lease as build_drain_lease
from servicekit.state.factory import job_store as build_job_store
from servicekit.state.factory import queue_store as build_queue_store
from servicekit.streaming import STREAM_HEADERS, ChunkStream, json_line
from servicekit.timebudget import lambda_time_left_s
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from runner.budget import Budget
from runner.drain import JOB_TOO_LONG, Drain
from runner.guard import ChatOnly, startup_notice
from runner.hostlock import FileHostLock, HostLock
from runner.jobs import JobRunner
from runner.metadata import PATHS, MetadataCache, MetadataKind
from runner.models import ModelCheck
from runner.ollama import OllamaClient, PreparedGeneration
from runner.settings import Settings
from runner.settle import HOLDER_SUFFIX, HolderMark, Settle
from runner.slot import GenerationSlot, Place
from runner.wire import (
    EmbedReply,
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

logger = logging.getLogger("runner")


QUEUE_POSITION_HEADER = "X-Queue-Position"
QUEUE_WAIT_HEADER = "X-Queue-Wait-Ms"
# On AWS: the ticket chat queued and waited on until it was the head; the runner claims it.
QUEUE_TICKET_HEADER = "X-Queue-Ticket"


def queue_headers(position: int, queue_ms: float) -> dict[str, str]:
    """Where a request stood when it joined the queue (0: it ran at once), and how long it waited."""
    return {QUEUE_POSITION_HEADER: str(position), QUEUE_WAIT_HEADER: f"{queue_ms:.1f}"}


def queued_line(standing: Standing) -> bytes:
    """A waiting stream's progress line: ``{"queued": {"position": 3, "eta_s": 12.5}}``."""
    return json_line({"queued": {"position": standing.position, "eta_s": round(standing.eta_s, 1)}})


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
        drain: Drain | None = None,
    ) -> None:
        self.settings = settings
        self.drain = drain
        self.ollama = ollama
        self.slot = slot
        self.jobs = jobs
        self.metadata_cache = MetadataCache(ollama)
        self.metrics = metrics
        self.models = ModelCheck(ollama)

    def _place(self, request: Request, model: str) -> AbstractAsyncContextManager[Place]:
        """A place in the queue for this request (refusals raise here); leaving it releases the slot
        or the ticket. On AWS, chat names the ticket it waited on (``X-Queue-Ticket``)."""
        ticket_id = request.headers.get(QUEUE_TICKET_HEADER)
        return self.slot.place(caller_of(request.scope), "interactive", model, ticket_id=ticket_id)

    async def run(self, request: Request) -> Response:
        model = request.path_params["model"]
        data = await read_json_object(request, self.settings)
        generation = parse_generation_request(data, max_prompt_chars=self.settings.max_prompt_chars)
        stream = generation.get("stream", False)
        prepared = self.ollama.prepare(*ollama_request(model, generation))
        budget = Budget.of(request)
        timeout_s = budget.cap(queue_timeout_s(self.settings, request.scope))
        record = record_of(request.scope)
        record.model, record.stream = model, stream
        if not stream:
            async with self._place(request, model) as place:
                ticket = await self.slot.wait(place, timeout_s)
                final = await budget.run(self.ollama.generate(prepared))
                ticket.ended_cleanly = True
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
            return JSONResponse(reply, headers=queue_headers(place.admitted.position, ticket.queue_ms))

        # Streaming: everything that needs no slot is checked first (a refusal keeps its status);
        # then the status line goes out at once and the client hears its place while it waits.
        await self.models.require(model)
        async with AsyncExitStack() as stack:
            place = await stack.enter_async_context(self._place(request, model))
            cleanup = stack.pop_all()
        lines = self._stream_lines(place, prepared, budget, timeout_s, cleanup, request_id_of(request.scope), record)
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
        record: RequestRecord,
    ) -> AsyncGenerator[bytes, None]:
        try:
            if place.grant is None:
                yield queued_line(place.standing)
                async for standing in self.slot.standings(place, timeout_s):
                    yield queued_line(standing)
                yield queued_line(Standing(position=0, eta_s=0.0, depth=0))
            assert place.grant is not None
            ticket = await self.slot.ready(place.grant)
            # Closed (by ChunkStream's cleanup) before the place, so before the slot is released.
            chunks = await budget.run(stack.enter_async_context(self.ollama.stream(prepared)))
            while True:
                # The budget bounds each wait for Ollama, never the writes to our client.
                try:
                    chunk = await budget.run(anext(chunks))
                except StopAsyncIteration:
                    break
                if chunk.get("done"):
                    ticket.ended_cleanly = True
                    record.note_generation(record.model, chunk, ticket.queue_ms)
                    yield json_line(done_of(chunk, ticket.queue_ms))
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
        data = await read_json_object(request, self.settings)
        embedding = parse_embedding_request(data, max_prompt_chars=self.settings.max_prompt_chars)
        prepared = self.ollama.prepare(*ollama_embed_request(model, embedding))
        budget = Budget.of(request)
        async with self._place(request, model) as place:
            ticket = await self.slot.wait(place, budget.cap(queue_timeout_s(self.settings, request.scope)))
            answer = await budget.run(self.ollama.embed(prepared))
            ticket.ended_cleanly = True
        reply: EmbedReply = {
            "model": model,
            "embeddings": answer["embeddings"],
            "usage": {"prompt_tokens": int(answer.get("prompt_eval_count", 0)), "completion_tokens": 0},
            "timings": timings_of({**answer, "eval_count": 0}, ticket.queue_ms),  # type: ignore[typeddict-item]
        }
        return JSONResponse(reply, headers=queue_headers(place.admitted.position, ticket.queue_ms))

    async def metadata(self, request: Request) -> Response:
        """Ollama's own answer (status and body) to a metadata request, from a short cache; never queued."""
        kind = request.path_params["kind"]
        if kind not in PATHS:
            raise RouteNotFound(f"There is no route {request.url.path}.")
        body = None
        if request.method == "POST":
            body = await read_json_object(request, self.settings)
        status, answer = await self.metadata_cache.get(cast(MetadataKind, kind), body)
        return JSONResponse(answer, status_code=status)

    async def run_job(self, request: Request) -> Response:
        """Queue a stored job (a batch ticket that any runner holding the slot runs); on AWS, where chat
        queued it, a kick: drain the queue's jobs (runner.drain)."""
        job_id = request.path_params["job_id"]
        now = time.time()
        job = await self.jobs.store.get(job_id, now=now) if is_job_id(job_id) else None
        if job is None:
            raise JobNotFound(f"There is no job {job_id}.")
        if "aws.context" in request.scope and self.drain is not None:
            # Chat queued the job's ticket (AWS); this asynchronous invocation is a kick, late or
            # not: drain whatever jobs are at the head (none: one read, and it returns).
            await self._drain(request)
            after = await self.jobs.store.get(job_id, now=time.time())
            return JSONResponse({"id": job_id, "status": after["status"] if after is not None else "expired"})
        if job["status"] != "queued":  # a duplicate delivery: it ran, or it will not run
            return JSONResponse({"id": job_id, "status": job["status"]})
        caller = caller_of(request.scope)
        if "aws.context" in request.scope:
            # Without the shared queue (a Lambda handler run on SQLite, as `local.invoke` does): the
            # invocation is the worker. End the job cleanly before Lambda would kill it.
            budget = Budget(lambda_time_left_s(request.scope), advice=JOB_TOO_LONG)
            wait_s = min(job["start_deadline"] - now, queue_timeout_s(self.settings, request.scope))
            status = await self.jobs.execute(job, caller, wait_s=wait_s, budget=budget)
            return JSONResponse({"id": job_id, "status": status or "skipped"})
        standing = await self.slot.enqueue_job(job_id, caller, job["model"])
        await self.jobs.store.set_queue_position(job_id, standing.position)
        return JSONResponse({"id": job_id, "status": "queued", "queue_position": standing.position}, status_code=202)

    async def drain_queue(self, request: Request) -> Response:
        """``POST /v1/queue/drain``: on AWS, run the queue's jobs while this invocation has time
        (runner.drain); elsewhere every runner process drains already."""
        return JSONResponse({"status": await self._drain(request)})

    async def _drain(self, request: Request) -> str:
        time_left = lambda_time_left_s(request.scope)
        if self.drain is None or time_left is None:
            return "idle"
        started = time.monotonic()
        return await self.drain.run(lambda: time_left - (time.monotonic() - started))

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
        depth = (await self.slot.read_queue()).depth_by_class()
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
    observe: ObserveSettings | None = None,
    metrics: PrometheusMetrics | None = None,
    queue_store: QueueStore | None = None,
    drain_lease: DrainLease | None = None,
    self_invoker: LambdaInvoker | None = None,
) -> Starlette:
    observe = observe or ObserveSettings()
    metrics = metrics or prometheus_metrics(observe)
    settle = Settle(max_s=settings.settle_max_s, mark=HolderMark(settings.lock_path + HOLDER_SUFFIX))
    ollama = OllamaClient(
        settings.ollama_url, timeout=settings.ollama_timeout, transport=ollama_transport, pace=settle.pace
    )
    file_lock = None  # the lock this app opened, and so closes
    if host_lock is None:
        host_lock = file_lock = FileHostLock(settings.lock_path)
    slot = GenerationSlot(
        host_lock,
        queue_store or build_queue_store(settings.state, settings.queue_limits),
        poll_interval_s=settings.lock_poll_interval_s,
        settle=settle,
        observer=slot_observer_for("runner", observe, metrics),
    )
    observers = observers_for("runner", observe, metrics)
    jobs = JobRunner(settings, job_store or build_job_store(settings.state), slot, ollama, observers)
    slot.on_job = jobs.run_claimed
    drain = None
    if (lease := drain_lease or build_drain_lease(settings.state)) is not None:
        drain = Drain(
            slot, jobs, lease, function_name=settings.function_name, invoker=lambda: self_invoker or _lambda_client()
        )
        slot.after_adopted = drain.hand_over_if_jobs_wait
    runner = Runner(settings, ollama, slot, jobs, metrics, drain)

    chat_only = [Middleware(ChatOnly, token=settings.runner_token)]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if (notice := startup_notice(settings.runner_token)) is not None:
            logger.warning(notice)
        slot.start()
        yield
        await aclose()

    async def aclose() -> None:
        """Close what the app holds (its lifespan's end; ``local invoke`` after one Lambda-style call)."""
        await slot.aclose()
        await jobs.aclose()
        await ollama.aclose()
        settle.close()
        if file_lock is not None:
            file_lock.close()

    app = Starlette(
        routes=[
            Route("/v1/run/{model:path}", runner.run, methods=["POST"], middleware=chat_only),
            Route("/v1/embed/{model:path}", runner.embed, methods=["POST"], middleware=chat_only),
            Route("/v1/ollama/{kind}", runner.metadata, methods=["GET", "POST"], middleware=chat_only),
            Route("/v1/jobs/{job_id}/run", runner.run_job, methods=["POST"], middleware=chat_only),
            Route(DRAIN_PATH, runner.drain_queue, methods=["POST"], middleware=chat_only),
            Route("/healthz", runner.healthz, methods=["GET"]),
            Route("/readyz", runner.readyz, methods=["GET"]),
        ],
        middleware=[
            Middleware(ObserveRequests, service="runner", observers=observers),
            Middleware(RequestIdMiddleware),
            Middleware(CancelOnDisconnect),
        ],
        exception_handlers=dict(exception_handlers),
        lifespan=lifespan,
    )
    app.state.runner = runner
    app.state.aclose = aclose
    return app


_clients: list[LambdaInvoker] = []


def _lambda_client() -> LambdaInvoker:
    """This container's one Lambda client (a drain's self-invoke), made on first use."""
    if not _clients:
        import boto3

        # boto3's typed client takes these keywords among many others; the Protocol names the ones we use.
        _clients.append(cast(LambdaInvoker, boto3.client("lambda")))
    return _clients[0]


app = create_app(Settings.from_env(), observe=ObserveSettings.from_env(os.environ))

"""Chat's ASGI app: ``POST /chat``, the jobs API (``/v1/jobs``), Ollama's API (``/api/*``, ``/``),
OpenAI's (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``),
``GET /healthz``, ``/readyz``, ``/openapi.json``, and the chat page (``GET /`` for browsers,
``/static/…``, ``/v1/config``).

``app`` is built from the environment at import: one runner client and one key cache per process.
The routing table says which routes need a caller (``Authenticate``); the others are public.
Every API goes through :class:`Chat`'s two ways to generate (:meth:`Chat.whole`,
:meth:`Chat.open_stream`), so every one of them waits its turn in the same runner slot.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from servicekit.body import read_json_object
from servicekit.callers import Caller, caller_of
from servicekit.disconnect import CancelOnDisconnect
from servicekit.embedding import EmbeddingRequest
from servicekit.errors import ModelForbidden, exception_handlers_for
from servicekit.generation import GenerationRequest, parse_generation_request
from servicekit.jobs.store import JobStore
from servicekit.observe.metrics import PrometheusMetrics
from servicekit.observe.middleware import ObserveRequests, observers_for, prometheus_metrics
from servicekit.observe.record import record_of
from servicekit.observe.settings import ObserveSettings
from servicekit.queue.store import QueueStore
from servicekit.requestid import RequestIdMiddleware, request_id_of
from servicekit.state.factory import StateSettings
from servicekit.state.factory import drain_lease as build_drain_lease
from servicekit.state.factory import job_store as build_job_store
from servicekit.state.factory import key_store as build_key_store
from servicekit.state.factory import queue_store as build_queue_store
from servicekit.state.keys import KeyStore
from servicekit.streaming import STREAM_HEADERS, ChunkStream
from servicekit.timebudget import DeadlineMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chat.auth import Authenticate, Authenticator
from chat.dialects import error_renderer
from chat.jobs_api import JobsEndpoints
from chat.lambda_queue import LambdaQueue
from chat.lambda_transport import LambdaInvokeTransport, boto3_lambda_client
from chat.metadata import Metadata, RunnerMetadata, SettingsMetadata
from chat.metrics_api import MetricsEndpoint
from chat.models import MISSING, Models
from chat.ollama_api import OllamaAPI
from chat.openai_api import OpenAIAPI
from chat.openapi import openapi_document
from chat.page import Page
from chat.readiness import Readiness, RunnerReadiness, aws_readiness
from chat.runner_client import RunnerClient
from chat.settings import Settings
from chat.streamformat import MEDIA_TYPES, relay, stream_format

# What the runner says about a request's wait, passed on to the client.
QUEUE_HEADERS = ("X-Queue-Position", "X-Queue-Wait-Ms")

logger = logging.getLogger("chat")


def _queue_wait(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name in QUEUE_HEADERS if (value := headers.get(name)) is not None}


class Chat:
    """The endpoints, over one runner client."""

    def __init__(self, settings: Settings, runner: RunnerClient, readiness: Readiness) -> None:
        self.settings = settings
        self.runner = runner
        self.readiness = readiness
        self.models = Models(settings.default_model, settings.allowed_models)
        self.openapi = openapi_document(settings)

    def model(self, data: dict[str, Any], caller: Caller) -> str:
        """The requested model (or the default), if it is served here and the caller's key allows it."""
        return self.allowed_for(caller, data.get("model", MISSING))

    def allowed_for(self, caller: Caller, requested: Any = MISSING) -> str:
        model = self.models.choose(requested, listed=self.allowed_models(caller))
        if caller.models is not None and model not in caller.models:
            raise ModelForbidden(f"Your API key does not allow model '{model}'; it allows: {list(caller.models)}.")
        return model

    def visible(self, caller: Caller, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ollama's model entries this caller may use (its key's list, when it has one)."""
        names = set(self.allowed_models(caller))
        return [entry for entry in entries if self.models.allowed_name(entry["name"]) in names]

    def allowed_models(self, caller: Caller) -> tuple[str, ...]:
        """The models this caller may name: ALLOWED_MODELS, narrowed by the key's own list."""
        if caller.models is None:
            return self.settings.allowed_models
        return tuple(m for m in self.settings.allowed_models if m in caller.models)

    async def body(self, request: Request) -> dict[str, Any]:
        return await read_json_object(request, self.settings)

    async def whole(
        self, model: str, generation: GenerationRequest, request: Request
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A whole generation through the runner's slot: its reply, and the headers to pass on."""
        caller = caller_of(request.scope)
        record = record_of(request.scope)
        record.model, record.stream, record.prompt = model, False, generation.get("prompt")
        reply, headers = await self.runner.run(model, generation, request_id_of(request.scope), caller)
        record.note_reply(model, reply)
        record.answer = reply.get("response") if isinstance(reply.get("response"), str) else None
        return reply, _queue_wait(headers)

    async def embed(
        self, model: str, embedding: EmbeddingRequest, request: Request
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Embeddings through the runner's slot: its reply, and the wait to pass on."""
        caller = caller_of(request.scope)
        reply, headers = await self.runner.embed(model, embedding, request_id_of(request.scope), caller)
        return reply, {k: v for k, v in headers.items() if k.lower() == "x-queue-wait-ms"}

    async def open_stream(
        self, model: str, generation: GenerationRequest, request: Request
    ) -> tuple[AsyncIterator[str], dict[str, str], AsyncExitStack]:
        """Open a streamed generation through the runner's slot: its lines, headers, and what closes it.

        The runner's refusals (a full queue, an unknown model) surface here, before any byte is
        sent, so they keep their status codes.
        """
        caller = caller_of(request.scope)
        record = record_of(request.scope)
        record.model, record.stream, record.prompt = model, True, generation.get("prompt")
        async with AsyncExitStack() as stack:
            runner_stream = self.runner.stream(model, generation, request_id_of(request.scope), caller)
            lines, headers = await stack.enter_async_context(runner_stream)
            cleanup = stack.pop_all()
        return lines, {**STREAM_HEADERS, **_queue_wait(headers)}, cleanup

    async def chat(self, request: Request) -> Response:
        data = await self.body(request)
        generation = parse_generation_request(
            data, max_prompt_chars=self.settings.max_prompt_chars, also_allowed=("model",)
        )
        model = self.model(data, caller_of(request.scope))
        if not generation.get("stream", False):
            reply, headers = await self.whole(model, generation, request)
            return JSONResponse(reply, headers=headers)
        fmt = stream_format(request.headers.get("accept", ""))
        lines, headers, cleanup = await self.open_stream(model, generation, request)
        chunks = relay(lines, fmt, request_id_of(request.scope), record_of(request.scope))
        return ChunkStream(chunks, cleanup=cleanup, media_type=MEDIA_TYPES[fmt], headers=headers)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", **await self.readiness.check(request_id_of(request.scope))})

    async def openapi_json(self, request: Request) -> Response:
        return JSONResponse(self.openapi)


def runner_transport_for(settings: Settings, queue: LambdaQueue | None = None) -> httpx.AsyncBaseTransport | None:
    """HTTP to RUNNER_URL by default; ``lambda:Invoke`` of RUNNER_FUNCTION on AWS (waiting in ``queue``)."""
    if not settings.runner_function:
        return None
    invoker = boto3_lambda_client(settings.runner_invoke_read_timeout_s, settings.runner_connect_timeout_s)
    return LambdaInvokeTransport(
        invoker, settings.runner_function, default_deadline_s=settings.chat_deadline_s, queue=queue
    )


def lambda_queue_for(settings: Settings) -> LambdaQueue | None:
    """On AWS (RUNNER_FUNCTION and JOBS_TABLE): the queue in the table, where chat waits its turn."""
    lease = build_drain_lease(settings.state)
    if not settings.runner_function or lease is None:
        return None
    return LambdaQueue(build_queue_store(settings.state, settings.queue_limits), lease)


def metadata_for(settings: Settings, runner: RunnerClient, models: Models) -> Metadata:
    """Ollama's answers through the runner; on AWS, chat's own settings (see :mod:`chat.metadata`)."""
    return SettingsMetadata(models) if settings.runner_function else RunnerMetadata(runner, models)


def readiness_for(settings: Settings, runner: RunnerClient) -> Readiness:
    """The runner's own /readyz by default; on AWS the control plane, never an invoke."""
    if not settings.runner_function:
        return RunnerReadiness(runner)
    return aws_readiness(settings.runner_function, settings.state.table, settings.runner_connect_timeout_s)


def queue_for(settings: Settings, lambda_queue: LambdaQueue | None) -> QueueStore | None:
    """The deployment's queue, for exact job positions (None: a table but no runner function to wait for)."""
    if lambda_queue is not None:
        return lambda_queue.queue
    if settings.state.table:
        return None
    return build_queue_store(settings.state, settings.queue_limits)


def key_add_command(state: StateSettings) -> str:
    """The command that adds a key where this chat reads keys (this interpreter, this store)."""
    where = f"--table {state.table}" if state.table else ""
    prefix = "" if state.table else f"STATE_DIR={shlex.quote(state.directory)} "
    return f"{prefix}{shlex.quote(sys.executable)} -m chat.keys {where + ' ' if where else ''}add NAME"


def create_app(
    settings: Settings,
    *,
    runner_transport: httpx.AsyncBaseTransport | None = None,
    job_store: JobStore | None = None,
    key_store: KeyStore | None = None,
    readiness: Readiness | None = None,
    observe: ObserveSettings | None = None,
    metrics: PrometheusMetrics | None = None,
    lambda_queue: LambdaQueue | None = None,
) -> Starlette:
    observe = observe or ObserveSettings()
    metrics = metrics or prometheus_metrics(observe)
    lambda_queue = lambda_queue or lambda_queue_for(settings)
    transport = runner_transport or runner_transport_for(settings, lambda_queue)
    runner = RunnerClient(
        settings.runner_url, timeout=settings.runner_timeout, transport=transport, token=settings.runner_token
    )
    chat = Chat(settings, runner, readiness or readiness_for(settings, runner))
    queue = queue_for(settings, lambda_queue)
    jobs = JobsEndpoints(
        settings,
        job_store or build_job_store(settings.state),
        runner,
        chat.model,
        queue=queue,
        lambda_queue=lambda_queue,
    )
    auth = Authenticator(
        key_store or build_key_store(settings.state),
        mode=settings.auth,
        trust_proxy_headers=settings.trust_proxy_headers,
        cache_ttl_s=settings.key_cache_ttl_s,
    )
    caller_needed = [Middleware(Authenticate, auth=auth)]
    metadata = metadata_for(settings, runner, chat.models)
    page = Page(settings)
    ollama_api = OllamaAPI(chat, metadata, caller_needed, page)
    openai_api = OpenAIAPI(chat, metadata, caller_needed)
    operator_routes = []
    if metrics is not None:
        scrape = MetricsEndpoint(
            metrics,
            keys=settings.metrics_keys,
            multiprocess_dir=observe.multiprocess_dir,
            state=settings.state,
            queue=queue,
        )
        operator_routes.append(Route("/metrics", scrape.metrics_text, methods=["GET"], middleware=caller_needed))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logger.warning(await auth.startup_notice(key_add_command(settings.state)))
        yield
        await runner.aclose()

    app = Starlette(
        routes=[
            Route("/chat", chat.chat, methods=["POST"], middleware=caller_needed),
            Route("/healthz", chat.healthz, methods=["GET"]),
            Route("/readyz", chat.readyz, methods=["GET"]),
            Route("/openapi.json", chat.openapi_json, methods=["GET"]),
            Route("/v1/jobs", jobs.jobs, methods=["GET", "POST"], middleware=caller_needed),
            Route("/v1/jobs/{job_id}", jobs.job, methods=["GET", "DELETE"], middleware=caller_needed),
            *ollama_api.routes(),
            *openai_api.routes(),
            *page.routes(),
            *operator_routes,
        ],
        middleware=[
            Middleware(ObserveRequests, service="chat", observers=observers_for("chat", observe, metrics)),
            Middleware(RequestIdMiddleware),
            Middleware(DeadlineMiddleware, deadline_s=settings.chat_deadline_s),
            Middleware(CancelOnDisconnect),
        ],
        exception_handlers=dict(exception_handlers_for(error_renderer)),
        lifespan=lifespan,
    )
    app.state.chat = chat
    app.state.auth = auth
    app.state.aclose = runner.aclose  # what the lifespan's end closes (``local invoke`` calls it too)
    return app


app = create_app(Settings.from_env(), observe=ObserveSettings.from_env(os.environ))

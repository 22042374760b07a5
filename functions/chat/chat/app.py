"""Chat's ASGI app: ``POST /chat``, the jobs API (``/v1/jobs``), Ollama's API (``/api/*``, ``/``),
OpenAI's (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``),
``GET /healthz``, ``/readyz``, ``/openapi.json``.

``app`` is built from the environment at import: one runner client per process. Every API
goes through :class:`Chat`'s two ways to generate (:meth:`Chat.whole`, :meth:`Chat.open_stream`),
so every one of them waits its turn in the same runner slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from servicekit.body import read_json_object
from servicekit.disconnect import CancelOnDisconnect
from servicekit.errors import NotReady, UpstreamError, exception_handlers_for
from servicekit.generation import GenerationRequest, parse_generation_request
from servicekit.jobs.store import JobStore
from servicekit.requestid import RequestIdMiddleware, request_id_of
from servicekit.state.factory import job_store as build_job_store
from servicekit.streaming import STREAM_HEADERS, ChunkStream
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chat.deadline import DeadlineMiddleware
from chat.dialects import error_renderer
from chat.errors import RunnerBusy
from chat.jobs_api import JobsEndpoints
from chat.lambda_transport import LambdaInvokeTransport, boto3_lambda_client
from chat.metadata import Metadata, RunnerMetadata, SettingsMetadata
from chat.models import MISSING, Models
from chat.ollama_api import OllamaAPI
from chat.openai_api import OpenAIAPI
from chat.openapi import openapi_document
from chat.runner_client import RunnerClient
from chat.settings import Settings
from chat.streamformat import MEDIA_TYPES, relay, stream_format

QUEUE_WAIT_HEADER = "X-Queue-Wait-Ms"


def _queue_wait(headers: httpx.Headers) -> dict[str, str]:
    value = headers.get(QUEUE_WAIT_HEADER)
    return {QUEUE_WAIT_HEADER: value} if value is not None else {}


class Chat:
    """The endpoints, over one runner client."""

    def __init__(self, settings: Settings, runner: RunnerClient) -> None:
        self.settings = settings
        self.runner = runner
        self.models = Models(settings.default_model, settings.allowed_models)
        self.openapi = openapi_document(settings)

    def model(self, data: dict[str, Any]) -> str:
        """The requested model (or the default), if it is allowed here."""
        return self.models.choose(data.get("model", MISSING))

    async def body(self, request: Request) -> dict[str, Any]:
        return await read_json_object(
            request, max_bytes=self.settings.max_body_bytes, timeout_s=self.settings.body_read_timeout_s
        )

    async def whole(
        self, model: str, generation: GenerationRequest, request: Request
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A whole generation through the runner's slot: its reply, and the headers to pass on."""
        reply, headers = await self.runner.run(model, generation, request_id_of(request.scope))
        return reply, _queue_wait(headers)

    async def open_stream(
        self, model: str, generation: GenerationRequest, request: Request
    ) -> tuple[AsyncIterator[str], dict[str, str], AsyncExitStack]:
        """Open a streamed generation through the runner's slot: its lines, headers, and what closes it.

        The runner's refusals (a full queue, an unknown model) surface here, before any byte is
        sent, so they keep their status codes.
        """
        async with AsyncExitStack() as stack:
            runner_stream = self.runner.stream(model, generation, request_id_of(request.scope))
            lines, headers = await stack.enter_async_context(runner_stream)
            cleanup = stack.pop_all()
        return lines, {**STREAM_HEADERS, **_queue_wait(headers)}, cleanup

    async def chat(self, request: Request) -> Response:
        data = await self.body(request)
        generation = parse_generation_request(
            data, max_prompt_chars=self.settings.max_prompt_chars, also_allowed=("model",)
        )
        model = self.model(data)
        if not generation.get("stream", False):
            reply, headers = await self.whole(model, generation, request)
            return JSONResponse(reply, headers=headers)
        fmt = stream_format(request.headers.get("accept", ""))
        lines, headers, cleanup = await self.open_stream(model, generation, request)
        return ChunkStream(
            relay(lines, fmt, request_id_of(request.scope)),
            cleanup=cleanup,
            media_type=MEDIA_TYPES[fmt],
            headers=headers,
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            status, body = await self.runner.ready(request_id_of(request.scope))
        except RunnerBusy:
            # On AWS a generation in progress throttles the probe: busy is alive.
            return JSONResponse({"status": "ok", "runner": {"busy": True}})
        except UpstreamError as exc:
            raise NotReady(f"The runner is not ready: {exc.message}") from exc
        if status != 200:
            detail = body.get("error", {}).get("message", f"status {status}") if body else f"status {status}"
            raise NotReady(f"The runner is not ready: {detail}")
        return JSONResponse({"status": "ok", "runner": body})

    async def openapi_json(self, request: Request) -> Response:
        return JSONResponse(self.openapi)


def runner_transport_for(settings: Settings) -> httpx.AsyncBaseTransport | None:
    """HTTP to RUNNER_URL by default; ``lambda:Invoke`` of RUNNER_FUNCTION on AWS."""
    if not settings.runner_function:
        return None
    invoker = boto3_lambda_client(settings.runner_invoke_read_timeout_s, settings.runner_connect_timeout_s)
    return LambdaInvokeTransport(invoker, settings.runner_function, default_deadline_s=settings.chat_deadline_s)


def metadata_for(settings: Settings, runner: RunnerClient, models: Models) -> Metadata:
    """Ollama's answers through the runner; on AWS, chat's own settings (see :mod:`chat.metadata`)."""
    return SettingsMetadata(models) if settings.runner_function else RunnerMetadata(runner, models)


def create_app(
    settings: Settings,
    *,
    runner_transport: httpx.AsyncBaseTransport | None = None,
    job_store: JobStore | None = None,
) -> Starlette:
    transport = runner_transport or runner_transport_for(settings)
    runner = RunnerClient(settings.runner_url, timeout=settings.runner_timeout, transport=transport)
    chat = Chat(settings, runner)
    jobs = JobsEndpoints(settings, job_store or build_job_store(settings.state), runner, chat.model)
    metadata = metadata_for(settings, runner, chat.models)
    ollama_api = OllamaAPI(chat, metadata)
    openai_api = OpenAIAPI(chat, metadata)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await runner.aclose()

    app = Starlette(
        routes=[
            Route("/chat", chat.chat, methods=["POST"]),
            Route("/healthz", chat.healthz, methods=["GET"]),
            Route("/readyz", chat.readyz, methods=["GET"]),
            Route("/openapi.json", chat.openapi_json, methods=["GET"]),
            Route("/v1/jobs", jobs.create, methods=["POST"]),
            Route("/v1/jobs/{job_id}", jobs.job, methods=["GET", "DELETE"]),
            *ollama_api.routes(),
            *openai_api.routes(),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(DeadlineMiddleware, deadline_s=settings.chat_deadline_s),
            Middleware(CancelOnDisconnect),
        ],
        exception_handlers=dict(exception_handlers_for(error_renderer)),
        lifespan=lifespan,
    )
    app.state.chat = chat
    return app


app = create_app(Settings.from_env())

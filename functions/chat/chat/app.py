"""Chat's ASGI app: ``POST /chat``, the jobs API (``/v1/jobs``), ``GET /healthz``, ``/readyz``, ``/openapi.json``.

``app`` is built from the environment at import: one runner client and one key cache per process.
The routing table says which routes need a caller (``Authenticate``); the others are public.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from servicekit.body import read_json_object
from servicekit.callers import Caller, caller_of
from servicekit.disconnect import CancelOnDisconnect
from servicekit.errors import InvalidRequest, ModelForbidden, ModelNotFound, exception_handlers
from servicekit.generation import parse_generation_request
from servicekit.jobs.store import JobStore
from servicekit.requestid import RequestIdMiddleware, request_id_of
from servicekit.state.factory import job_store as build_job_store
from servicekit.state.factory import key_store as build_key_store
from servicekit.state.keys import KeyStore
from servicekit.streaming import STREAM_HEADERS, ChunkStream
from servicekit.timebudget import DeadlineMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chat.auth import Authenticate, Authenticator
from chat.jobs_api import JobsEndpoints
from chat.lambda_transport import LambdaInvokeTransport, boto3_lambda_client
from chat.openapi import openapi_document
from chat.readiness import Readiness, RunnerReadiness, aws_readiness
from chat.runner_client import RunnerClient
from chat.settings import Settings
from chat.streamformat import MEDIA_TYPES, relay, stream_format

QUEUE_WAIT_HEADER = "X-Queue-Wait-Ms"

logger = logging.getLogger("chat")


def _queue_wait(headers: httpx.Headers) -> dict[str, str]:
    value = headers.get(QUEUE_WAIT_HEADER)
    return {QUEUE_WAIT_HEADER: value} if value is not None else {}


class Chat:
    """The endpoints, over one runner client."""

    def __init__(self, settings: Settings, runner: RunnerClient, readiness: Readiness) -> None:
        self.settings = settings
        self.runner = runner
        self.readiness = readiness
        self.openapi = openapi_document(settings)

    def model(self, data: dict[str, Any], caller: Caller) -> str:
        """The requested model (or the default), if it is served here and the caller's key allows it."""
        model = data.get("model", self.settings.default_model)
        if not isinstance(model, str):
            raise InvalidRequest("'model' must be a string.")
        if model not in self.settings.allowed_models:
            raise ModelNotFound(f"Model '{model}' is not available here; allowed: {list(self.allowed_models(caller))}.")
        if caller.models is not None and model not in caller.models:
            raise ModelForbidden(f"Your API key does not allow model '{model}'; it allows: {list(caller.models)}.")
        return model

    def allowed_models(self, caller: Caller) -> tuple[str, ...]:
        """The models this caller may name: ALLOWED_MODELS, narrowed by the key's own list."""
        if caller.models is None:
            return self.settings.allowed_models
        return tuple(m for m in self.settings.allowed_models if m in caller.models)

    async def chat(self, request: Request) -> Response:
        data = await read_json_object(
            request, max_bytes=self.settings.max_body_bytes, timeout_s=self.settings.body_read_timeout_s
        )
        generation = parse_generation_request(
            data, max_prompt_chars=self.settings.max_prompt_chars, also_allowed=("model",)
        )
        caller = caller_of(request.scope)
        model = self.model(data, caller)
        request_id = request_id_of(request.scope)
        if not generation.get("stream", False):
            reply, headers = await self.runner.run(model, generation, request_id, caller)
            return JSONResponse(reply, headers=_queue_wait(headers))

        fmt = stream_format(request.headers.get("accept", ""))
        # The runner's refusals (a full queue, an unknown model) surface here, before any byte
        # is sent, so they keep their status codes.
        async with AsyncExitStack() as stack:
            lines, headers = await stack.enter_async_context(self.runner.stream(model, generation, request_id, caller))
            cleanup = stack.pop_all()
        return ChunkStream(
            relay(lines, fmt, request_id),
            cleanup=cleanup,
            media_type=MEDIA_TYPES[fmt],
            headers={**STREAM_HEADERS, **_queue_wait(headers)},
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", **await self.readiness.check(request_id_of(request.scope))})

    async def openapi_json(self, request: Request) -> Response:
        return JSONResponse(self.openapi)


def runner_transport_for(settings: Settings) -> httpx.AsyncBaseTransport | None:
    """HTTP to RUNNER_URL by default; ``lambda:Invoke`` of RUNNER_FUNCTION on AWS."""
    if not settings.runner_function:
        return None
    invoker = boto3_lambda_client(settings.runner_invoke_read_timeout_s, settings.runner_connect_timeout_s)
    return LambdaInvokeTransport(invoker, settings.runner_function, default_deadline_s=settings.chat_deadline_s)


def readiness_for(settings: Settings, runner: RunnerClient) -> Readiness:
    """The runner's own /readyz by default; on AWS the control plane, never an invoke."""
    if not settings.runner_function:
        return RunnerReadiness(runner)
    return aws_readiness(settings.runner_function, settings.state.table, settings.runner_connect_timeout_s)


def create_app(
    settings: Settings,
    *,
    runner_transport: httpx.AsyncBaseTransport | None = None,
    job_store: JobStore | None = None,
    key_store: KeyStore | None = None,
    readiness: Readiness | None = None,
) -> Starlette:
    transport = runner_transport or runner_transport_for(settings)
    runner = RunnerClient(
        settings.runner_url, timeout=settings.runner_timeout, transport=transport, token=settings.runner_token
    )
    chat = Chat(settings, runner, readiness or readiness_for(settings, runner))
    jobs = JobsEndpoints(settings, job_store or build_job_store(settings.state), runner, chat.model)
    auth = Authenticator(
        key_store or build_key_store(settings.state),
        mode=settings.auth,
        trust_proxy_headers=settings.trust_proxy_headers,
        cache_ttl_s=settings.key_cache_ttl_s,
    )
    caller_needed = [Middleware(Authenticate, auth=auth)]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logger.warning(await auth.startup_notice())
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
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(DeadlineMiddleware, deadline_s=settings.chat_deadline_s),
            Middleware(CancelOnDisconnect),
        ],
        exception_handlers=dict(exception_handlers),
        lifespan=lifespan,
    )
    app.state.chat = chat
    app.state.auth = auth
    return app


app = create_app(Settings.from_env())

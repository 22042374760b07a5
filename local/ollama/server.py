"""The model server's HTTP API in Ollama's shapes: generation (``/api/generate``, ``/api/chat``),
embeddings (``/api/embed``, ``/api/embeddings``) and, from :mod:`local.ollama.catalog`, the rest."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from servicekit.disconnect import CancelOnDisconnect
from servicekit.generation import GenerationOptions as Options
from servicekit.streaming import ChunkStream, json_line
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from local.ollama.catalog import Catalog, json_body, timestamp
from local.ollama.engine import Engine, Finished, Message, ResponseFormat
from local.ollama.errors import BadRequest
from local.ollama.model_server import ModelServer
from local.ollama.requests import (
    parse_embed_input,
    parse_format,
    parse_keep_alive,
    parse_messages,
    parse_model,
    parse_options,
    parse_truncate,
)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def normalized(vector: list[float]) -> list[float]:
    """Scaled to length 1, as Ollama's /api/embed answers (its legacy /api/embeddings does not)."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


@dataclass(frozen=True)
class GenerationCall:
    model: str
    chat: bool
    messages: list[Message]
    options: Options
    fmt: ResponseFormat | None
    keep_alive_s: float
    stream: bool


class Routes:
    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def generate(self, request: Request) -> Response:
        body = await json_body(request)
        engine = self.server.engine
        model = parse_model(body, engine.card.name)
        fmt = parse_format(body)
        if fmt is not None:
            engine.check_format(fmt)  # a schema llama.cpp cannot enforce is a 400, before any byte
        call = GenerationCall(
            model=model,
            chat=request.url.path == "/api/chat",
            messages=parse_messages(body, request.url.path == "/api/chat"),
            options=parse_options(body),
            fmt=fmt,
            keep_alive_s=parse_keep_alive(body),
            stream=body.get("stream", True) is not False,
        )
        lines = self._lines(call)
        if not call.stream:
            return Response([line async for line in lines][-1], media_type="application/json")
        return ChunkStream(lines, cleanup=AsyncExitStack(), media_type="application/x-ndjson")

    async def _lines(self, call: GenerationCall) -> AsyncGenerator[bytes, None]:
        started = time.perf_counter()
        load_s = 0.0
        first_token_at: float | None = None
        text: list[str] = []
        finished = Finished(0, 0, "stop")
        if not call.messages:  # no prompt: load the model, or unload it with keep_alive 0, as Ollama
            if call.keep_alive_s == 0:
                await self.server.unload()
            else:
                load_s = await self.server.load(call.keep_alive_s)
        else:
            events = self.server.generate(call.messages, call.options, call.fmt, call.keep_alive_s)
            try:
                async with aclosing(events):
                    async for event in events:
                        if isinstance(event, float):
                            load_s = event
                        elif isinstance(event, Finished):
                            finished = event
                        else:
                            first_token_at = first_token_at or time.perf_counter()
                            text.append(event)
                            if call.stream:
                                yield json_line(self._piece(call, event, done=False))
            except BadRequest as exc:
                if not call.stream:
                    raise
                yield json_line({"error": str(exc)})  # the status is sent: Ollama ends the stream so
                return
        ended = time.perf_counter()
        eval_started = first_token_at or ended
        final = self._piece(call, "" if call.stream else "".join(text), done=True)
        if not call.messages:
            final["done_reason"] = "unload" if call.keep_alive_s == 0 else "load"
        final.update(
            done_reason=final.get("done_reason", finished.done_reason),
            total_duration=_ns(ended - started),
            load_duration=_ns(load_s),
            prompt_eval_count=finished.prompt_tokens,
            prompt_eval_duration=_ns(max(0.0, eval_started - started - load_s)),
            eval_count=finished.completion_tokens,
            eval_duration=_ns(ended - eval_started),
        )
        yield json_line(final)

    @staticmethod
    def _piece(call: GenerationCall, text: str, *, done: bool) -> dict[str, Any]:
        piece: dict[str, Any] = {"model": call.model, "created_at": timestamp(datetime.now(UTC))}
        if call.chat:
            piece["message"] = {"role": "assistant", "content": text}
        else:
            piece["response"] = text
        piece["done"] = done
        return piece

    async def embed(self, request: Request) -> Response:
        """``/api/embed`` (``input``: one text or several; normalized vectors) and the legacy
        ``/api/embeddings`` (``prompt``: one text; the raw vector)."""
        legacy = request.url.path == "/api/embeddings"
        body = await json_body(request)
        model = parse_model(body, self.server.engine.card.name)
        texts = parse_embed_input(body, legacy)
        truncate, keep_alive_s = parse_truncate(body), parse_keep_alive(body)
        started = time.perf_counter()
        if texts:
            load_s, embedded = await self.server.embed(texts, truncate, keep_alive_s)
            vectors, tokens = embedded.vectors, embedded.prompt_tokens
        else:  # no input: load the model only, as Ollama
            load_s, vectors, tokens = await self.server.load(keep_alive_s), [], 0
        if legacy:
            return JSONResponse({"embedding": vectors[0] if vectors else []})
        return JSONResponse(
            {
                "model": model,
                "embeddings": [normalized(v) for v in vectors],
                "total_duration": _ns(time.perf_counter() - started),
                "load_duration": _ns(load_s),
                "prompt_eval_count": tokens,
            }
        )


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


def create_app(engine: Engine) -> ASGIApp:
    server = ModelServer(engine)
    routes, catalog = Routes(server), Catalog(server)
    app = Starlette(
        routes=[
            Route("/", catalog.root, methods=["GET", "HEAD"]),
            Route("/api/version", catalog.version, methods=["GET"]),
            Route("/api/tags", catalog.tags, methods=["GET"]),
            Route("/api/ps", catalog.ps, methods=["GET"]),
            Route("/api/show", catalog.show, methods=["POST"]),
            Route("/api/pull", catalog.pull, methods=["POST"]),
            Route("/api/generate", routes.generate, methods=["POST"]),
            Route("/api/chat", routes.generate, methods=["POST"]),
            Route("/api/embed", routes.embed, methods=["POST"]),
            Route("/api/embeddings", routes.embed, methods=["POST"]),
            Route("/_local/stats", catalog.stats, methods=["GET"]),
        ],
        exception_handlers={BadRequest: _bad_request},
    )
    return CancelOnDisconnect(app)

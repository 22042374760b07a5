"""The model server's HTTP API, in Ollama's shapes (``/api/generate``, ``/api/chat``, ``/api/tags`` ...)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

from servicekit.disconnect import CancelOnDisconnect
from servicekit.generation import GenerationOptions as Options
from servicekit.streaming import ChunkStream, json_line
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from local.ollama.engine import Engine, Finished, Message
from local.ollama.model_server import BadRequest, ModelServer

VERSION = "0.9.0-local"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Routes:
    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise BadRequest(f"invalid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    async def generate(self, request: Request) -> Response:
        chat = request.url.path == "/api/chat"
        body = await self._json(request)
        model = self.server._model(body)
        messages = self.server._messages(body, chat)
        options = self.server._options(body)
        lines = self._lines(model, chat, messages, options, stream=body.get("stream", True) is not False)
        if body.get("stream", True) is False:
            return Response([line async for line in lines][-1], media_type="application/json")
        return ChunkStream(lines, cleanup=AsyncExitStack(), media_type="application/x-ndjson")

    async def _lines(
        self, model: str, chat: bool, messages: list[Message], options: Options, *, stream: bool
    ) -> AsyncGenerator[bytes, None]:
        started = time.perf_counter()
        load_s = 0.0
        first_token_at: float | None = None
        text: list[str] = []
        finished = Finished(0, 0, "stop")
        if messages:  # an empty prompt only loads the model, as with Ollama
            async with aclosing(self.server.generate(messages, options)) as events:
                async for event in events:
                    if isinstance(event, float):
                        load_s = event
                    elif isinstance(event, Finished):
                        finished = event
                    else:
                        first_token_at = first_token_at or time.perf_counter()
                        text.append(event)
                        if stream:
                            yield json_line(self._piece(model, chat, event, done=False))
        else:
            load_s = await self.server.load()
        ended = time.perf_counter()
        eval_started = first_token_at or ended
        final = self._piece(model, chat, "" if stream else "".join(text), done=True)
        final.update(
            done_reason=finished.done_reason if messages else "load",
            total_duration=_ns(ended - started),
            load_duration=_ns(load_s),
            prompt_eval_count=finished.prompt_tokens,
            prompt_eval_duration=_ns(max(0.0, eval_started - started - load_s)),
            eval_count=finished.completion_tokens,
            eval_duration=_ns(ended - eval_started),
        )
        yield json_line(final)

    @staticmethod
    def _piece(model: str, chat: bool, text: str, *, done: bool) -> dict[str, Any]:
        piece: dict[str, Any] = {"model": model, "created_at": _now()}
        if chat:
            piece["message"] = {"role": "assistant", "content": text}
        else:
            piece["response"] = text
        piece["done"] = done
        return piece

    def _details(self) -> dict[str, Any]:
        card = self.server.engine.card
        return {
            "parent_model": "", "format": "gguf", "family": card.family, "families": [card.family],
            "parameter_size": card.parameter_size, "quantization_level": card.quantization_level,
        }  # fmt: skip

    def _listing(self) -> dict[str, Any]:
        card = self.server.engine.card
        return {"name": card.name, "model": card.name, "size": card.size, "digest": card.digest,
                "details": self._details()}  # fmt: skip

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": VERSION})

    async def tags(self, request: Request) -> Response:
        return JSONResponse({"models": [{**self._listing(), "modified_at": _now()}]})

    async def ps(self, request: Request) -> Response:
        if not self.server.engine.loaded:
            return JSONResponse({"models": []})
        expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        return JSONResponse({"models": [{**self._listing(), "expires_at": expires, "size_vram": 0}]})

    async def show(self, request: Request) -> Response:
        body = await self._json(request)
        body.setdefault("model", body.get("name"))
        self.server._model(body)
        card = self.server.engine.card
        return JSONResponse({
            "modelfile": f"FROM {card.name}", "parameters": "", "template": card.template,
            "details": self._details(), "model_info": card.model_info, "capabilities": ["completion"],
            "modified_at": _now(),
        })  # fmt: skip

    async def pull(self, request: Request) -> Response:
        body = await self._json(request)
        body.setdefault("model", body.get("name"))
        stream = body.get("stream", True) is not False
        try:
            self.server._model(body)
        except BadRequest:
            error = {"error": "pull model manifest: file does not exist"}
            if not stream:
                return JSONResponse(error, status_code=500)
            return Response(json_line(error), media_type="application/x-ndjson")
        if not stream:
            return JSONResponse({"status": "success"})
        statuses = ["pulling manifest", f"pulling {self.server.engine.card.digest[:12]}", "verifying sha256 digest",
                    "writing manifest", "success"]  # fmt: skip
        return Response(b"".join(json_line({"status": s}) for s in statuses), media_type="application/x-ndjson")

    async def stats(self, request: Request) -> Response:
        """Not Ollama's: what tests need to prove one generation at a time."""
        s = self.server
        return JSONResponse(
            {"peak": s.peak, "active": s.active, "generations": s.generations, "cancelled": s.cancelled}
        )


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


def create_app(engine: Engine) -> ASGIApp:
    routes = Routes(ModelServer(engine))
    app = Starlette(
        routes=[
            Route("/", routes.root, methods=["GET", "HEAD"]),
            Route("/api/version", routes.version, methods=["GET"]),
            Route("/api/tags", routes.tags, methods=["GET"]),
            Route("/api/ps", routes.ps, methods=["GET"]),
            Route("/api/show", routes.show, methods=["POST"]),
            Route("/api/pull", routes.pull, methods=["POST"]),
            Route("/api/generate", routes.generate, methods=["POST"]),
            Route("/api/chat", routes.generate, methods=["POST"]),
            Route("/_local/stats", routes.stats, methods=["GET"]),
        ],
        exception_handlers={BadRequest: _bad_request},
    )
    return CancelOnDisconnect(app)

"""A fake Ollama for tests: Ollama's wire shapes, a recorder of what reached it, and injectable faults.

It serves in-process (``httpx.ASGITransport(fake.app)``) or as a real server on loopback
(:func:`tests.servers.serve_in_thread`). The :class:`Recorder` tells whether two generations
ever overlapped (``peak``: the most at once), in which order prompts arrived, and whether a
generation was abandoned by its client before it finished.

Like Ollama, it notices that a client is gone only when it has its next token ready: a streamed
generation stops at its next chunk, and a non-streamed one (which writes nothing until the
end) runs on to its end. So a runner that hands the slot on the moment it closes a request
shows up here as a peak of 2.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


@dataclass
class Recorder:
    active: int = 0
    peak: int = 0
    prompts: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # every generation or embed request, as sent
    metadata_calls: list[str] = field(default_factory=list)  # paths of tags/show/ps/version requests
    completed: int = 0
    abandoned: int = 0  # generations stopped early (at the next token after their client left)
    clients_gone: int = 0  # streamed requests whose client closed before the end (seen at once)
    chunks_sent: int = 0  # streamed token chunks written to their clients
    # (start, end) of each generation, perf_counter seconds
    spans: list[tuple[float, float]] = field(default_factory=list)

    def gaps_ms(self) -> list[float]:
        spans = sorted(self.spans)
        return [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(spans)]


@dataclass
class Faults:
    token_delay_s: float = 0.0
    tokens: int = 3
    fail_status: int | None = None  # answer every generation with this status
    stall: bool = False  # never answer
    error_line_after_tokens: int | None = None  # send {"error": ...} mid-stream
    done_reason: str = "stop"  # "length": as if num_predict cut the reply short


def _prompt_of(body: dict[str, Any]) -> str:
    if "prompt" in body:
        return str(body["prompt"])
    messages = body.get("messages") or [{}]
    return str(messages[-1].get("content", ""))


MODIFIED_AT = "2026-01-01T00:00:00Z"
DETAILS = {"format": "gguf", "family": "llama", "parameter_size": "1B", "quantization_level": "Q4_0"}


def _model_entry(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": 1000,
        "digest": "0" * 64,
        "details": DETAILS,
    }


def _vector(text: str) -> list[float]:
    """A deterministic unit vector: the same text always embeds the same way."""
    raw = [float(len(text)), float(sum(map(ord, text)) % 97 + 1), float(len(text.split())), 1.0]
    norm = sum(x * x for x in raw) ** 0.5
    return [x / norm for x in raw]


class FakeOllama:
    def __init__(self, models: tuple[str, ...] = ("tinyllama",)) -> None:
        self.models = set(models)
        self.faults = Faults()
        self.recorder = Recorder()
        self.app = Starlette(
            routes=[
                Route("/api/version", self.version, methods=["GET"]),
                Route("/api/tags", self.tags, methods=["GET"]),
                Route("/api/show", self.show, methods=["POST"]),
                Route("/api/ps", self.ps, methods=["GET"]),
                Route("/api/generate", self.generate, methods=["POST"]),
                Route("/api/chat", self.generate, methods=["POST"]),
                Route("/api/embed", self.embed, methods=["POST"]),
                Route("/_fake/stats", self.stats, methods=["GET"]),
                Route("/_fake/reset", self.reset, methods=["POST"]),
            ]
        )

    async def stats(self, request: Request) -> Response:
        """What the recorder saw, for benchmarks that run this fake in another process."""
        rec = self.recorder
        return JSONResponse(
            {
                "peak": rec.peak,
                "active": rec.active,
                "started": len(rec.prompts),
                "completed": rec.completed,
                "abandoned": rec.abandoned,
                "chunks_sent": rec.chunks_sent,
                "gaps_ms": rec.gaps_ms(),
            }
        )

    async def reset(self, request: Request) -> Response:
        self.recorder = Recorder()
        self._apply_query(request)
        return JSONResponse({"status": "reset"})

    def _apply_query(self, request: Request) -> None:
        if "token_delay_s" in request.query_params:
            self.faults.token_delay_s = float(request.query_params["token_delay_s"])
        if "tokens" in request.query_params:
            self.faults.tokens = int(request.query_params["tokens"])

    async def version(self, request: Request) -> Response:
        self.recorder.metadata_calls.append(request.url.path)
        return JSONResponse({"version": "0.0.0-fake"})

    def _has(self, model: object) -> bool:
        """Ollama's naming: "tinyllama" and "tinyllama:latest" are the same model."""
        return isinstance(model, str) and (model in self.models or model.removesuffix(":latest") in self.models)

    async def tags(self, request: Request) -> Response:
        self.recorder.metadata_calls.append(request.url.path)
        return JSONResponse({"models": [_model_entry(f"{m}:latest") for m in sorted(self.models)]})

    async def show(self, request: Request) -> Response:
        self.recorder.metadata_calls.append(request.url.path)
        model = json.loads(await request.body()).get("model")
        if not self._has(model):
            return JSONResponse({"error": f"model '{model}' not found"}, status_code=404)
        return JSONResponse(
            {
                "modelfile": f"FROM {model}",
                "parameters": "stop <|im_end|>",
                "template": "{{ .Prompt }}",
                "details": DETAILS,
                "model_info": {"general.architecture": "llama", "llama.context_length": 2048},
                "capabilities": ["completion"],
                "modified_at": MODIFIED_AT,
            }
        )

    async def ps(self, request: Request) -> Response:
        self.recorder.metadata_calls.append(request.url.path)
        models = [
            {**_model_entry(f"{m}:latest"), "expires_at": "2026-01-01T00:05:00Z", "size_vram": 0}
            for m in sorted(self.models)
        ]
        return JSONResponse({"models": models})

    async def embed(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.recorder.bodies.append({"path": request.url.path, **body})
        if not self._has(body.get("model")):
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, status_code=404)
        if self.faults.fail_status is not None:
            return JSONResponse({"error": "injected failure"}, status_code=self.faults.fail_status)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        async with _Generation(self.recorder, " | ".join(inputs)):
            await asyncio.sleep(self.faults.token_delay_s)
            return JSONResponse(
                {
                    "model": body["model"],
                    "embeddings": [_vector(text) for text in inputs],
                    "total_duration": 2000,
                    "load_duration": 1000,
                    "prompt_eval_count": sum(len(text.split()) for text in inputs),
                }
            )

    def _tokens(self, prompt: str, body: dict[str, Any]) -> list[str]:
        if body.get("format"):
            # As a model under a JSON grammar would: the reply is one JSON object, in pieces.
            text = json.dumps({"answer": prompt})
            return [text[: len(text) // 2], text[len(text) // 2 :]]
        words = (prompt.split() or ["empty"]) * self.faults.tokens
        return [f"{w} " for w in words[: self.faults.tokens]]

    def _final(self, chat: bool, text: str, started: float) -> dict[str, Any]:
        elapsed_ns = int((time.perf_counter() - started) * 1e9)
        final: dict[str, Any] = {
            "model": "fake",
            "done": True,
            "done_reason": self.faults.done_reason,
            "total_duration": elapsed_ns + 1000,
            "load_duration": 1000,
            "prompt_eval_count": 7,
            "prompt_eval_duration": 500,
            "eval_count": self.faults.tokens,
            "eval_duration": max(elapsed_ns, 1),
        }
        if chat:
            final["message"] = {"role": "assistant", "content": text}
        else:
            final["response"] = text
        return final

    @staticmethod
    def _add_extras(final: dict[str, Any], body: dict[str, Any], chat: bool) -> dict[str, Any]:
        """Thinking (when asked) and a call of the first tool offered, as Ollama answers them."""
        if body.get("think"):
            if chat:
                final["message"]["thinking"] = "Let me think. "
            else:
                final["thinking"] = "Let me think. "
        if chat and body.get("tools"):
            name = body["tools"][0].get("function", {}).get("name", "tool")
            final["message"]["tool_calls"] = [{"function": {"name": name, "arguments": {"city": "Paris"}}}]
        return final

    async def generate(self, request: Request) -> Response:
        body = json.loads(await request.body())
        chat = request.url.path.endswith("/chat")
        self.recorder.bodies.append({"path": request.url.path, **body})
        if not self._has(body.get("model")):
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, status_code=404)
        if self.faults.fail_status is not None:
            return JSONResponse({"error": "injected failure"}, status_code=self.faults.fail_status)
        if self.faults.stall:
            client = _ClientWatch(request.receive, self.recorder)
            await client.gone.wait()  # never answers; gives up only when its client does
            return Response(status_code=499)
        tokens = self._tokens(_prompt_of(body), body)
        if body.get("stream", True):
            client = _ClientWatch(request.receive, self.recorder)
            return _LineStream(self._stream(body, chat, tokens, client), client)
        # Not streamed: nothing is written until the end, so (like Ollama) the generation runs on
        # to its end even when its client is long gone.
        async with self._generation(body):
            started = time.perf_counter()
            for _ in tokens:
                await asyncio.sleep(self.faults.token_delay_s)
            return JSONResponse(self._add_extras(self._final(chat, "".join(tokens), started), body, chat))

    async def _stream(
        self, body: dict[str, Any], chat: bool, tokens: list[str], client: _ClientWatch
    ) -> AsyncGenerator[bytes, None]:
        # Ollama sends a thinking model's reasoning before its answer, in chunks of their own.
        if body.get("think"):
            thought: dict[str, Any] = {"model": body["model"], "done": False}
            if chat:
                thought["message"] = {"role": "assistant", "content": "", "thinking": "Let me think. "}
            else:
                thought.update(response="", thinking="Let me think. ")
            yield json.dumps(thought).encode() + b"\n"
        async with self._generation(body) as generation:
            started = time.perf_counter()
            for index, token in enumerate(tokens):
                if index == self.faults.error_line_after_tokens:
                    yield json.dumps({"error": "injected error line"}).encode() + b"\n"
                    return
                await asyncio.sleep(self.faults.token_delay_s)
                if client.gone.is_set():
                    # As Ollama: a closed request is noticed when the next token is ready, not before.
                    generation.abandon()
                    return
                piece: dict[str, Any] = {"model": body["model"], "done": False}
                if chat:
                    piece["message"] = {"role": "assistant", "content": token}
                else:
                    piece["response"] = token
                yield json.dumps(piece).encode() + b"\n"
                self.recorder.chunks_sent += 1
            if chat and body.get("tools"):
                call = self._add_extras(self._final(chat, "", started), {"tools": body["tools"]}, chat)["message"]
                yield json.dumps({"model": body["model"], "done": False, "message": call}).encode() + b"\n"
            final = self._final(chat, "", started)
            yield json.dumps(final).encode() + b"\n"

    def _generation(self, body: dict[str, Any]) -> _Generation:
        return _Generation(self.recorder, _prompt_of(body))


def main() -> None:
    """``python -m tests.fake_ollama --port N``: the fake as a real server of its own."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-delay-s", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=3)
    args = parser.parse_args()
    fake = FakeOllama()
    fake.faults.token_delay_s = args.token_delay_s
    fake.faults.tokens = args.tokens
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


class _ClientWatch:
    """Learns that the client is gone (``http.disconnect``) while the generation runs.

    Watching is all it does: unlike ``StreamingResponse`` (which cancels its generator the moment
    the client leaves), the fake, like Ollama, only finds out at its next token.
    """

    def __init__(self, receive: Receive, recorder: Recorder) -> None:
        self.gone = asyncio.Event()
        self._recorder = recorder
        self._task = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._recorder.clients_gone += 1
        self.gone.set()

    def stop(self) -> None:
        self._task.cancel()


class _LineStream(Response):
    """NDJSON written line by line; a line that cannot be written ends the generation."""

    def __init__(self, lines: AsyncGenerator[bytes, None], client: _ClientWatch) -> None:
        self.status_code = 200
        self.media_type = "application/x-ndjson"
        self.background = None
        self.init_headers()  # no body set: chunked, no Content-Length
        self._lines = lines
        self._client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for line in self._lines:
                await send({"type": "http.response.body", "body": line, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away between two lines
            pass
        finally:
            self._client.stop()
            await self._lines.aclose()


class _Generation:
    """Counts a generation as active from its first to its last token, and the peak at once."""

    def __init__(self, recorder: Recorder, prompt: str) -> None:
        self.recorder = recorder
        self.prompt = prompt
        self.started = 0.0
        self.abandoned = False

    def abandon(self) -> None:
        self.abandoned = True

    async def __aenter__(self) -> _Generation:
        rec = self.recorder
        rec.active += 1
        rec.peak = max(rec.peak, rec.active)
        rec.prompts.append(self.prompt)
        self.started = time.perf_counter()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        rec = self.recorder
        rec.active -= 1
        rec.spans.append((self.started, time.perf_counter()))
        if exc_type is None and not self.abandoned:
            rec.completed += 1
        else:
            rec.abandoned += 1


if __name__ == "__main__":
    main()

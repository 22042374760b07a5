"""One engine behind a FIFO lock and a single worker thread: one generation at a time, as
Ollama with ``OLLAMA_NUM_PARALLEL=1``; and the parsing of Ollama's request bodies."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from servicekit.generation import GenerationOptions as Options

from local.ollama.engine import Engine, Finished, Message

OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (int, float), "top_p": (int, float), "repeat_penalty": (int, float),
    "top_k": (int,), "seed": (int,), "num_predict": (int,), "num_ctx": (int,), "stop": (list,),
}  # fmt: skip


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ModelServer:
    """One engine, one generation at a time (a FIFO lock and a single worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation")
        self._count_lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.generations = 0
        self.cancelled = 0

    # -- requests ------------------------------------------------------------------------

    def _model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model is required")
        name = self.engine.card.name
        if model not in (name, f"{name}:latest") and f"{model}:latest" != name:
            raise BadRequest(f"model '{model}' not found", status=404)
        return model

    @staticmethod
    def _options(body: dict[str, Any]) -> Options:
        raw = body.get("options") or {}
        if not isinstance(raw, dict):
            raise BadRequest("options must be an object")
        options: dict[str, Any] = {}
        for key, value in raw.items():
            kinds = OPTION_TYPES.get(key)
            if kinds is None:
                continue  # Ollama ignores options it does not know (with a warning)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise BadRequest(f"option {key!r} has the wrong type")
            options[key] = value
        return options  # type: ignore[return-value]

    @staticmethod
    def _messages(body: dict[str, Any], chat: bool) -> list[Message]:
        if chat:
            messages = body.get("messages", [])
            valid = isinstance(messages, list) and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content", ""), str)
                for m in messages
            )
            if not valid:
                raise BadRequest("messages must be a list of {role, content} objects")
            return [{"role": m["role"], "content": m.get("content", "")} for m in messages]
        prompt, system = body.get("prompt", ""), body.get("system")
        if not isinstance(prompt, str) or (system is not None and not isinstance(system, str)):
            raise BadRequest("prompt and system must be strings")
        messages_: list[Message] = [{"role": "system", "content": system}] if system else []
        return [*messages_, {"role": "user", "content": prompt}] if prompt else messages_

    # -- generation ------------------------------------------------------------------------

    def _run_in_thread(self, messages: list[Message], options: Options, cancelled: threading.Event, emit: Any) -> None:
        with self._count_lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            for event in self.engine.generate(messages, options, cancelled):
                emit(event)
        except Exception as exc:
            emit(exc)
        finally:
            with self._count_lock:
                self.active -= 1
                self.generations += 1
            emit(None)

    async def load(self) -> float:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._worker, self.engine.load)

    async def generate(self, messages: list[Message], options: Options) -> AsyncGenerator[str | Finished | float, None]:
        """Wait for the model, then yield the load time, the text pieces and the :class:`Finished`."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            load_s = await loop.run_in_executor(self._worker, self.engine.load)
            yield load_s
            queue: asyncio.Queue[Any] = asyncio.Queue()
            cancelled = threading.Event()
            job = loop.run_in_executor(
                self._worker,
                self._run_in_thread,
                messages,
                options,
                cancelled,
                lambda event: loop.call_soon_threadsafe(queue.put_nowait, event),
            )
            try:
                while (event := await queue.get()) is not None:
                    if isinstance(event, Exception):
                        raise event
                    yield event
            finally:
                if not job.done():
                    cancelled.set()
                    self.cancelled += 1
                # Hold the lock until the engine has really stopped: never two generations at once.
                await asyncio.shield(job)

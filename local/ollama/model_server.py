"""One engine behind a FIFO lock and a single worker thread: one generation (or embedding) at a
time, as Ollama with ``OLLAMA_NUM_PARALLEL=1``; and the model's ``keep_alive`` bookkeeping."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from servicekit.generation import GenerationOptions as Options

from local.ollama.engine import Embedded, Engine, Finished, Message, ResponseFormat
from local.ollama.requests import DEFAULT_KEEP_ALIVE_S


class ModelServer:
    """One engine, one request at a time (a FIFO lock and a single worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation")
        self._count_lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.generations = 0
        self.cancelled = 0
        self.expires_at = 0.0  # wall-clock time the model may be unloaded after (keep_alive)

    # -- keep_alive ------------------------------------------------------------------------

    def touch(self, keep_alive_s: float = DEFAULT_KEEP_ALIVE_S) -> None:
        """The model was just used: it stays loaded ``keep_alive_s`` more (negative: for ever)."""
        self.expires_at = float("inf") if keep_alive_s < 0 else time.time() + keep_alive_s

    def expire(self) -> None:
        """Unload the model if its keep_alive has passed and nothing uses it."""
        if self.engine.loaded and time.time() >= self.expires_at and not self._lock.locked():
            self.engine.unload()

    async def unload(self) -> None:
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(self._worker, self.engine.unload)
            self.expires_at = 0.0

    # -- work ------------------------------------------------------------------------------

    async def load(self, keep_alive_s: float = DEFAULT_KEEP_ALIVE_S) -> float:
        async with self._lock:
            load_s = await asyncio.get_running_loop().run_in_executor(self._worker, self.engine.load)
            self.touch(keep_alive_s)
            return load_s

    async def embed(self, texts: list[str], truncate: bool, keep_alive_s: float) -> tuple[float, Embedded]:
        """Wait for the model; the load time and the embeddings."""
        self.expire()
        async with self._lock:
            loop = asyncio.get_running_loop()
            load_s = await loop.run_in_executor(self._worker, self.engine.load)
            try:
                return load_s, await loop.run_in_executor(self._worker, self.engine.embed, texts, truncate)
            finally:
                self.touch(keep_alive_s)

    def _run_in_thread(
        self,
        messages: list[Message],
        options: Options,
        fmt: ResponseFormat | None,
        cancelled: threading.Event,
        emit: Any,
    ) -> None:
        with self._count_lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            for event in self.engine.generate(messages, options, fmt, cancelled):
                emit(event)
        except Exception as exc:
            emit(exc)
        finally:
            with self._count_lock:
                self.active -= 1
                self.generations += 1
            emit(None)

    async def generate(
        self, messages: list[Message], options: Options, fmt: ResponseFormat | None, keep_alive_s: float
    ) -> AsyncGenerator[str | Finished | float, None]:
        """Wait for the model, then yield the load time, the text pieces and the :class:`Finished`."""
        self.expire()
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
                fmt,
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
                self.touch(keep_alive_s)

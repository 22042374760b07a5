"""Ollama's metadata (``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/version``), cached briefly, never queued.

Metadata never waits for the generation slot: a chat UI polling ``/api/tags`` must answer while
a long generation runs. Answers are kept :data:`CACHE_S` per process, and concurrent requests
for the same answer share one call to Ollama, so a crowd of pollers costs Ollama one request
every few seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

from runner.ollama import OllamaClient

CACHE_S = 2.0
MetadataKind = Literal["tags", "show", "ps", "version"]
PATHS: dict[MetadataKind, tuple[str, str]] = {
    "tags": ("GET", "/api/tags"),
    "show": ("POST", "/api/show"),
    "ps": ("GET", "/api/ps"),
    "version": ("GET", "/api/version"),
}


class MetadataCache:
    def __init__(self, ollama: OllamaClient, *, cache_s: float = CACHE_S) -> None:
        self._ollama = ollama
        self._cache_s = cache_s
        self._answers: dict[str, tuple[float, asyncio.Task[tuple[int, Any]]]] = {}

    async def get(self, kind: MetadataKind, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Ollama's status and JSON for ``kind``; at most one call per key every ``cache_s``."""
        key = kind + json.dumps(body, sort_keys=True)
        now = time.monotonic()
        cached = self._answers.get(key)
        if cached is None or (now >= cached[0] and cached[1].done()):
            if len(self._answers) > 256:  # show answers are per model: keep the table small
                self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
            method, path = PATHS[kind]
            # A task of its own: a caller that leaves does not cancel the answer the others wait for.
            task = asyncio.get_running_loop().create_task(self._ollama.metadata(method, path, body))
            task.add_done_callback(lambda done: self._forget_failure(key, done))
            cached = (now + self._cache_s, task)
            self._answers[key] = cached
        return await asyncio.shield(cached[1])

    def _forget_failure(self, key: str, task: asyncio.Task[tuple[int, Any]]) -> None:
        if (task.cancelled() or task.exception() is not None) and self._answers.get(key, (0, None))[1] is task:
            del self._answers[key]  # failures are not cached

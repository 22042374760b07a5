"""Is the model in Ollama? Asked before a stream's status line goes out (the slot comes later).

A stream answers 200 at once and then waits its turn, so an unknown model must be refused
before that, from Ollama's ``/api/tags``. A model found is remembered for ``ttl_s``; a model
missing is asked about again next time (it may have just been pulled).
"""

from __future__ import annotations

import time

from runner.errors import ModelNotFound
from runner.ollama import OllamaClient

MODEL_CACHE_TTL_S = 30.0


class ModelCheck:
    def __init__(self, ollama: OllamaClient, *, ttl_s: float = MODEL_CACHE_TTL_S) -> None:
        self.ollama = ollama
        self.ttl_s = ttl_s
        self._known_until: dict[str, float] = {}

    async def require(self, model: str) -> None:
        """Raise ``ModelNotFound`` unless Ollama lists ``model`` (``UpstreamError`` if it cannot say)."""
        if self._known_until.get(model, 0.0) > time.monotonic():
            return
        if not await self.ollama.has_model(model):
            raise ModelNotFound(f"Ollama does not have model '{model}': pull it with `ollama pull {model}`.")
        self._known_until[model] = time.monotonic() + self.ttl_s

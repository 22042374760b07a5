"""What chat says about models: ``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/version``, ``/v1/models``.

Metadata never waits for the generation slot. Two sources, one Protocol:

- :class:`RunnerMetadata` (local, compose): Ollama's own answers through the runner, which keeps
  them a couple of seconds (``runner.metadata``), filtered to ALLOWED_MODELS — a model is
  listed when it is both allowed here and present in Ollama.
- :class:`SettingsMetadata` (AWS): the runner is a Lambda function with reserved concurrency 1;
  invoking it for metadata would take the one slot (and be throttled while a generation runs).
  So chat answers from its own settings instead: the allowed models, no sizes or digests,
  nothing loaded (``ps`` is empty) and the version ``unknown``.
"""

from __future__ import annotations

from typing import Any, Protocol

from servicekit.errors import ModelNotFound, UpstreamError

from chat.models import Models, tagged
from chat.runner_client import RunnerClient

UNKNOWN_VERSION = "unknown"


class Metadata(Protocol):
    async def tags(self, request_id: str) -> list[dict[str, Any]]: ...

    async def show(self, model: str, request_id: str) -> dict[str, Any]: ...

    async def ps(self, request_id: str) -> list[dict[str, Any]]: ...

    async def version(self, request_id: str) -> str: ...


def _models_of(answer: Any) -> list[dict[str, Any]]:
    models = answer.get("models") if isinstance(answer, dict) else None
    if not isinstance(models, list):
        raise UpstreamError("Ollama answered a model list that is not a list of models.")
    return [m for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]


class RunnerMetadata:
    def __init__(self, runner: RunnerClient, models: Models) -> None:
        self._runner = runner
        self._models = models

    async def _get(self, kind: str, request_id: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return await self._runner.metadata(kind, body, request_id)

    def _allowed(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [entry for entry in entries if self._models.allowed_name(entry["name"]) is not None]

    async def tags(self, request_id: str) -> list[dict[str, Any]]:
        status, answer = await self._get("tags", request_id)
        if status != 200:
            raise UpstreamError(f"Ollama answered /api/tags with {status}.")
        return self._allowed(_models_of(answer))

    async def show(self, model: str, request_id: str) -> dict[str, Any]:
        name = self._models.choose(model)
        status, answer = await self._get("show", request_id, {"model": name})
        if status == 404:
            raise ModelNotFound(f"Ollama does not have model '{name}'.")
        if status != 200 or not isinstance(answer, dict):
            raise UpstreamError(f"Ollama answered /api/show with {status}.")
        return answer

    async def ps(self, request_id: str) -> list[dict[str, Any]]:
        status, answer = await self._get("ps", request_id)
        if status != 200:
            raise UpstreamError(f"Ollama answered /api/ps with {status}.")
        return self._allowed(_models_of(answer))

    async def version(self, request_id: str) -> str:
        status, answer = await self._get("version", request_id)
        if status != 200 or not isinstance(answer, dict):
            raise UpstreamError(f"Ollama answered /api/version with {status}.")
        return str(answer.get("version", UNKNOWN_VERSION))


class SettingsMetadata:
    def __init__(self, models: Models) -> None:
        self._models = models

    async def tags(self, request_id: str) -> list[dict[str, Any]]:
        return [{"name": tagged(name), "model": tagged(name), "details": {}} for name in self._models.allowed]

    async def show(self, model: str, request_id: str) -> dict[str, Any]:
        self._models.choose(model)
        return {"details": {}, "model_info": {}, "capabilities": ["completion"]}

    async def ps(self, request_id: str) -> list[dict[str, Any]]:
        return []

    async def version(self, request_id: str) -> str:
        return UNKNOWN_VERSION

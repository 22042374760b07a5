"""Chat's client for the runner: one per process, errors translated here, once.

Everything chat knows about reaching the runner is in this module, so the transport can change
(an ``httpx`` transport for tests, the Lambda invoke transport on AWS) without touching the app.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import quote

import httpx
from servicekit.callers import Caller
from servicekit.embedding import EmbeddingRequest
from servicekit.generation import GenerationRequest
from servicekit.upstream import Upstream, json_object, translate_mid_stream

from chat.errors import RELAYED_HEADERS, RunnerRefused, UpstreamError
from chat.lambda_transport import ASYNC_INVOKE, NO_BUSY_RETRY

RUNNER = "the runner"
# The runner answers metadata from a cache or one quick call to Ollama (whose own limit is 5 s).
METADATA_TIMEOUT_S = 6.0


def _refusal(response: httpx.Response, body: bytes) -> RunnerRefused | UpstreamError:
    """The runner's error envelope as an exception; anything else is an upstream error."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        headers = {name: response.headers[name] for name in RELAYED_HEADERS if name in response.headers}
        return RunnerRefused(response.status_code, cast(dict[str, Any], data["error"]), headers)
    return UpstreamError(f"The runner failed with status {response.status_code}.")


class RunnerClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None = None,
        token: str = "",
    ) -> None:
        self._http = Upstream(base_url, name=RUNNER, timeout=timeout, transport=transport, max_connections=256)
        # RUNNER_TOKEN: the runner believes the caller headers only with it (locally, compose).
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    def _headers(self, request_id: str, caller: Caller | None = None) -> dict[str, str]:
        headers = {"X-Request-ID": request_id, **self._auth}
        if caller is not None:
            headers.update(caller.headers())
        return headers

    async def aclose(self) -> None:
        await self._http.aclose()

    @staticmethod
    def _path(model: str, action: str = "run") -> str:
        return f"/v1/{action}/" + quote(model, safe=":/")

    async def run(
        self, model: str, body: GenerationRequest, request_id: str, caller: Caller
    ) -> tuple[dict[str, Any], httpx.Headers]:
        """A whole generation: the runner's reply and headers, or the runner's error raised."""
        return await self._whole(self._path(model), body, request_id, caller)

    async def embed(
        self, model: str, body: EmbeddingRequest, request_id: str, caller: Caller
    ) -> tuple[dict[str, Any], httpx.Headers]:
        """Embeddings, under the same slot as generations."""
        return await self._whole(self._path(model, "embed"), body, request_id, caller)

    async def metadata(
        self, kind: str, body: dict[str, Any] | None, request_id: str, caller: Caller | None = None
    ) -> tuple[int, Any]:
        """Ollama's own status and JSON for tags/show/ps/version, from the runner's short cache (never queued)."""
        request = self._http.request(
            "POST" if body is not None else "GET",
            f"/v1/ollama/{kind}",
            json_body=body,
            headers=self._headers(request_id, caller),
            timeout=httpx.Timeout(METADATA_TIMEOUT_S),
            extensions={NO_BUSY_RETRY: True},
        )
        response = await self._http.send(request)
        try:
            data = response.json()
        except ValueError:
            raise UpstreamError("The runner answered a metadata request with something that is not JSON.") from None
        if response.status_code >= 500 or (isinstance(data, dict) and isinstance(data.get("error"), dict)):
            raise _refusal(response, response.content)  # the runner's own failure, not Ollama's answer
        return response.status_code, data

    async def _whole(
        self, path: str, body: Any, request_id: str, caller: Caller
    ) -> tuple[dict[str, Any], httpx.Headers]:
        request = self._http.request("POST", path, json_body=body, headers=self._headers(request_id, caller))
        response = await self._http.send(request)
        if response.status_code != 200:
            raise _refusal(response, response.content)
        return json_object(response.content, "The runner answered with something"), response.headers

    @asynccontextmanager
    async def stream(
        self, model: str, body: GenerationRequest, request_id: str, caller: Caller
    ) -> AsyncIterator[tuple[AsyncIterator[str], httpx.Headers]]:
        """Open a streamed generation: NDJSON lines as the runner sends them, and its headers.

        The status is checked before the caller sees a line; leaving the ``async with`` closes
        the runner request (and so the runner's request to Ollama).
        """
        request = self._http.request(
            "POST", self._path(model), json_body=body, headers=self._headers(request_id, caller)
        )
        async with self._http.stream(request) as response:
            if response.status_code != 200:
                raise _refusal(response, await response.aread())
            yield self._lines(response), response.headers

    @staticmethod
    async def _lines(response: httpx.Response) -> AsyncIterator[str]:
        try:
            async for line in response.aiter_lines():
                if line:
                    yield line
        except httpx.HTTPError as exc:
            raise translate_mid_stream(exc, RUNNER) from exc

    async def start_job(self, job_id: str, request_id: str, caller: Caller) -> None:
        """Ask the runner to run a stored job (on AWS: an asynchronous invoke, queued by Lambda)."""
        request = self._http.request(
            "POST",
            f"/v1/jobs/{job_id}/run",
            headers=self._headers(request_id, caller),
            extensions={ASYNC_INVOKE: True},
        )
        response = await self._http.send(request)
        if response.status_code not in (200, 202):
            raise _refusal(response, response.content)

    async def ready(self, request_id: str) -> tuple[int, dict[str, Any]]:
        """The runner's /readyz status and body."""
        request = self._http.request(
            "GET",
            "/readyz",
            headers=self._headers(request_id),
            timeout=httpx.Timeout(5.0),
            extensions={NO_BUSY_RETRY: True},  # a probe must answer now, not retry a busy runner
        )
        response = await self._http.send(request)
        try:
            data = response.json()
        except ValueError:
            data = {}
        return response.status_code, data if isinstance(data, dict) else {}

"""The runner's Ollama client: one per process; httpx errors are translated here, once.

The transport is the test seam: pass ``httpx.ASGITransport(fake_ollama)`` to talk to an app
in-process instead of a socket.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import anyio
import httpx
from servicekit.upstream import Upstream, json_object, translate_mid_stream

from runner.errors import InvalidRequest, ModelNotFound, UpstreamError
from runner.settle import TokenPace
from runner.wire import (
    OllamaChunk,
    OllamaEmbedReply,
    OllamaEmbedRequest,
    OllamaEndpoint,
    OllamaRequest,
    chunk_extras,
    chunk_text,
    gathered,
)

# Metadata (tags, show, ps) answers at once in Ollama; a few seconds means it is in trouble.
METADATA_TIMEOUT_S = 5.0
# After the final chunk, how long to wait for the end of Ollama's body (it follows at once).
DRAIN_S = 0.05


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return cast(str, data["error"])
    return body.decode("utf-8", "replace")[:500] or "no message"


def _raise_for_status(response: httpx.Response, body: bytes, model: str) -> None:
    if response.status_code == 404:
        raise ModelNotFound(f"Ollama does not have model '{model}': {_error_message(body)}")
    if response.status_code == 400:
        # e.g. "... does not support tools" / "... does not support thinking": the request, not Ollama, is at fault.
        raise InvalidRequest(f"Ollama refused the request: {_error_message(body)}")
    if response.status_code >= 400:
        raise UpstreamError(f"Ollama answered {response.status_code}: {_error_message(body)}")


def _parse_chunk(line: bytes | str) -> OllamaChunk:
    data = json_object(line, "Ollama sent a line")
    if isinstance(data.get("error"), str):
        raise UpstreamError(f"Ollama reported an error: {data['error']}")
    return cast(OllamaChunk, data)


@dataclass(frozen=True, slots=True)
class PreparedGeneration:
    request: httpx.Request
    model: str


class OllamaClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None = None,
        pace: TokenPace | None = None,
    ) -> None:
        self.base_url = base_url
        self.pace = pace or TokenPace()  # the gaps between chunks, which size the settle
        self.name = f"Ollama at {base_url}"
        # One generation at a time: a few connections (the generation, a readiness probe) suffice.
        self._http = Upstream(base_url, name=self.name, timeout=timeout, transport=transport, max_connections=4)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def version(self) -> str:
        """Ollama's version; raises :class:`UpstreamError` when it does not answer properly."""
        response = await self._http.send(self._http.request("GET", "/api/version", timeout=httpx.Timeout(2.0)))
        _raise_for_status(response, response.content, "")
        try:
            data: Any = response.json() if response.content else {}
        except ValueError:
            raise UpstreamError("Ollama answered /api/version with something that is not JSON.") from None
        return str(data.get("version", "unknown")) if isinstance(data, dict) else "unknown"

    async def metadata(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Ollama's answer to a metadata request (``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/version``):
        its status and decoded JSON, errors included (a 404 from /api/show is an answer, not a failure)."""
        request = self._http.request(method, path, json_body=body, timeout=httpx.Timeout(METADATA_TIMEOUT_S))
        response = await self._http.send(request)
        if response.status_code >= 500:
            raise UpstreamError(f"Ollama answered {response.status_code}: {_error_message(response.content)}")
        try:
            return response.status_code, response.json()
        except ValueError:
            raise UpstreamError(f"Ollama answered {path} with something that is not JSON.") from None

    async def has_model(self, model: str) -> bool:
        """Whether Ollama lists ``model`` in /api/tags (``name`` and ``name:latest`` are the same model)."""
        response = await self._http.send(self._http.request("GET", "/api/tags", timeout=httpx.Timeout(2.0)))
        _raise_for_status(response, response.content, "")
        try:
            listed = response.json().get("models") or []
            names = {str(m.get(key, "")) for m in listed for key in ("name", "model")}
        except (ValueError, AttributeError, TypeError):
            raise UpstreamError("Ollama's /api/tags is not a list of models.") from None
        return model in names or f"{model}:latest" in names or model.removesuffix(":latest") in names

    def prepare(self, endpoint: OllamaEndpoint, body: OllamaRequest | OllamaEmbedRequest) -> PreparedGeneration:
        """Build the request while waiting for the slot: once granted, it only has to be sent."""
        return PreparedGeneration(self._http.request("POST", f"/api/{endpoint}", json_body=body), body["model"])

    async def generate(self, prepared: PreparedGeneration) -> OllamaChunk:
        """A whole generation: streamed from Ollama and gathered here into one final chunk.

        Never a non-streamed call: Ollama notices a closed request only when it writes its next
        token, so a caller that gives up stops a streamed generation at once, while a
        non-streamed one would run on to the end with the slot already given to the next request.
        """
        text: list[str] = []
        thinking: list[str] = []
        tool_calls: list[Any] = []
        async with self.stream(prepared) as chunks:
            async for chunk in chunks:
                extras = chunk_extras(chunk)
                text.append(chunk_text(chunk))
                thinking.append(extras.get("thinking", ""))
                tool_calls.extend(extras.get("tool_calls", []))
                if chunk.get("done"):
                    return gathered(chunk, "".join(text), "".join(thinking), tool_calls)
        raise UpstreamError("Ollama ended the stream before the generation was done.")

    async def embed(self, prepared: PreparedGeneration) -> OllamaEmbedReply:
        response = await self._http.send(prepared.request)
        _raise_for_status(response, response.content, prepared.model)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("embeddings"), list):
            raise UpstreamError("Ollama answered an embedding request with something that is not embeddings.")
        return cast(OllamaEmbedReply, data)

    @asynccontextmanager
    async def stream(self, prepared: PreparedGeneration) -> AsyncIterator[AsyncIterator[OllamaChunk]]:
        """Open a streamed generation; its status is checked before the caller sees a chunk.

        Leaving the ``async with`` closes the connection to Ollama, which stops the generation.
        """
        async with self._http.stream(prepared.request) as response:
            if response.status_code >= 400:
                _raise_for_status(response, await response.aread(), prepared.model)
            chunks = _Chunks(response.aiter_lines(), self.pace, self.name)
            yield chunks
            if chunks.done:
                await chunks.drain()


class _Chunks:
    """Ollama's chunks, timing the gaps between them; once the final one is read, the rest of the
    body (the stream's end) can be drained so the connection goes back to the pool."""

    def __init__(self, lines: AsyncIterator[str], pace: TokenPace, upstream: str) -> None:
        self._lines = lines
        self._pace = pace
        self._upstream = upstream
        self._last: float | None = None
        self.done = False

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> OllamaChunk:
        try:
            async for line in self._lines:
                if line.strip():
                    now = time.perf_counter()
                    if self._last is not None:
                        self._pace.record(now - self._last)
                    self._last = now
                    chunk = _parse_chunk(line)
                    self.done = bool(chunk.get("done"))
                    return chunk
        except httpx.HTTPError as exc:
            raise translate_mid_stream(exc, self._upstream) from exc
        raise StopAsyncIteration

    async def drain(self) -> None:
        """Read to the body's end (Ollama ends it right after the final chunk); past ``DRAIN_S`` the
        connection is closed instead. Closing a response that is not read to its end closes its
        connection, and the next generation would then wait for a new one.

        Shielded: a caller that cancels its scope on the final chunk (a job stops reporting
        progress) must still get that chunk back, not a cancellation from this read."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(DRAIN_S):
            try:
                async for _ in self._lines:
                    pass
            except httpx.HTTPError:
                pass  # the generation is complete; only the connection is lost

"""An HTTP upstream, reached through an httpx transport without ``httpx.AsyncClient``'s per-request layers.

Both hops (chat → runner, runner → Ollama) are plain JSON/NDJSON POSTs to one fixed base URL;
the client's redirects, cookies, auth flows and event hooks would only cost time on every
request (measured here: ~0.35 ms per hop). The default transport is aiohttp's client through
``httpx-aiohttp`` (its C HTTP parser saves another ~0.3 ms per hop over httpcore); anything that
speaks ``httpx.AsyncBaseTransport`` can stand in — tests pass ``httpx.ASGITransport``, chat on
AWS passes its Lambda invoke transport. :func:`translate` and :func:`translate_mid_stream` turn
httpx's errors into ours, the same way for every hop: :class:`Upstream` raises the first kind,
the clients' stream readers the second; :func:`json_object` refuses what is not a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from servicekit.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable


def translate(exc: httpx.HTTPError, upstream: str) -> UpstreamError:
    """A failure to get a response from ``upstream`` (a name for people: "Ollama", "the runner")."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return UpstreamUnavailable(f"{upstream[0].upper()}{upstream[1:]} cannot be reached.")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"{upstream[0].upper()}{upstream[1:]} did not answer in time.")
    return UpstreamError(f"The connection to {upstream} failed: {type(exc).__name__}.")


def translate_mid_stream(exc: httpx.HTTPError, upstream: str) -> UpstreamError:
    """A failure while reading a response body that had started: whatever the transport calls it,
    the connection broke (aiohttp's transport reports a dropped peer as a connect error)."""
    if isinstance(exc, httpx.TimeoutException):
        # Always a read timeout between chunks: we always stream, so the status line came first.
        return UpstreamTimeout(f"{upstream[0].upper()}{upstream[1:]} sent nothing for longer than its timeout.")
    return UpstreamError(f"The connection to {upstream} broke mid-stream: {type(exc).__name__}.")


def json_object(text: str | bytes, what: str) -> dict[str, Any]:
    """An upstream's line or body as a JSON object; ``what`` says who sent it ("Ollama sent a line")."""
    try:
        data = json.loads(text)
    except ValueError:
        raise UpstreamError(f"{what} that is not JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamError(f"{what} that is not a JSON object.")
    return data


def default_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    # Imported on first use: aiohttp is ~100 ms of a cold start, and chat on AWS never needs it.
    from httpx_aiohttp import AiohttpTransport

    # trust_env=False: these upstreams are ours; no proxy or certificate settings from the environment.
    return AiohttpTransport(trust_env=False, limits=httpx.Limits(max_connections=max_connections))


class Upstream:
    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name  # for people, in error messages: "the runner", "Ollama at ..."
        self._timeout = timeout.as_dict()
        self._given_transport = transport
        self._max_connections = max_connections
        self._default: httpx.AsyncBaseTransport | None = None

    @property
    def _transport(self) -> httpx.AsyncBaseTransport:
        if self._given_transport is not None:
            return self._given_transport
        if self._default is None:
            self._default = default_transport(self._max_connections)
        return self._default

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> httpx.Request:
        content = None if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
        all_headers = dict(headers or {})
        if content is not None:
            all_headers["content-type"] = "application/json"
        return httpx.Request(
            method,
            self.base_url + path,
            content=content,
            headers=all_headers,
            extensions={"timeout": timeout.as_dict() if timeout else self._timeout, **(extensions or {})},
        )

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send and read the whole response; httpx's errors are raised as ours (:func:`translate`)."""
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise translate(exc, self.name) from exc
        return response

    @asynccontextmanager
    async def stream(self, request: httpx.Request) -> AsyncIterator[httpx.Response]:
        """Send; the body is read by the caller; leaving closes the connection's response.

        httpx's errors in sending, closing, or reading a body whole inside are raised as ours
        (:func:`translate`); a stream that breaks while read line by line is the reader's to
        report (:func:`translate_mid_stream`).
        """
        try:
            response = await self._transport.handle_async_request(request)
            try:
                yield response
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise translate(exc, self.name) from exc

    async def aclose(self) -> None:
        if self._given_transport is not None or self._default is not None:
            await self._transport.aclose()

"""An httpx client over in-process ASGI apps that runs their lifespans, as a server would.

``httpx.ASGITransport`` never sends lifespan events, so an app's shutdown (closing its upstream
clients) would not run and its sockets would be left to the garbage collector. This client
starts the lifespan of its app and of the apps chained behind it on enter and ends them on exit.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send


class AppClient(httpx.AsyncClient):
    def __init__(self, app: ASGIApp, *, base_url: str, behind: Sequence[ASGIApp] = ()) -> None:
        super().__init__(transport=httpx.ASGITransport(app), base_url=base_url)
        self._apps = [*behind, app]  # innermost first: started first, stopped last
        self._lifespans = AsyncExitStack()

    async def __aenter__(self) -> Self:
        for app in self._apps:
            if isinstance(app, Starlette):  # plain ASGI callables in fault tests have no lifespan
                await self._lifespans.enter_async_context(app.router.lifespan_context(app))
        await super().__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc_value, traceback)
        finally:
            await self._lifespans.aclose()


def answering(status: int, content_type: bytes, *bodies: bytes) -> ASGIApp:
    """A stand-in upstream that answers every request with ``bodies``, each sent as it is."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        for index, body in enumerate(bodies, 1):
            await send({"type": "http.response.body", "body": body, "more_body": index < len(bodies)})

    return app

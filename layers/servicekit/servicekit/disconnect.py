"""Cancel a request's work as soon as its client disconnects.

ASGI servers report a disconnect only to whoever calls ``receive()``; an endpoint that waits
for the generation slot, or for a slow upstream, is not calling it. This middleware watches
``receive()`` once the body has been read and cancels the endpoint when the client leaves, so
a queued request leaves the queue and a running one closes its upstream request at once
(``finally`` blocks run; the slot is released synchronously there).
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        body_read = anyio.Event()
        disconnected = anyio.Event()
        response_done = False

        async def guarded_receive() -> Message:
            if body_read.is_set():
                # The watcher owns the real receive() now; the app only learns of a disconnect.
                await disconnected.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_done
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                response_done = True
            await send(message)

        async with anyio.create_task_group() as group:

            async def watch() -> None:
                await body_read.wait()
                while (await receive())["type"] != "http.disconnect":
                    pass
                disconnected.set()
                # Servers also report "disconnect" once the response is complete; that is no reason
                # to cancel anything.
                if not response_done:
                    group.cancel_scope.cancel()

            group.start_soon(watch)
            await self.app(scope, guarded_receive, tracking_send)
            group.cancel_scope.cancel()

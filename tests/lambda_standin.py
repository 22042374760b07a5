"""A stand-in for boto3's Lambda client whose ``invoke`` runs a real Lambda handler, as a container would.

Each stand-in owns one thread with one event loop, like a warm Lambda container: Mangum needs
a current event loop in the thread that calls the handler.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette

from local.lambda_context import LambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class InProcessLambda:
    def __init__(self, handler: Handler, function_name: str = "runner-function", timeout_s: float = 900) -> None:
        self._handler = handler
        self._function_name = function_name
        self._timeout_s = timeout_s
        self._container = ThreadPoolExecutor(
            max_workers=1, initializer=lambda: asyncio.set_event_loop(asyncio.new_event_loop())
        )
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> Mapping[str, Any]:
        event = json.loads(Payload)
        self.invocations.append(event)
        context = LambdaContext(function_name=self._function_name, timeout_s=self._timeout_s)
        if InvocationType == "Event":
            # Lambda's async queue: accepted at once, run when the (single) container is free.
            self._container.submit(self._handler, event, context)
            return {"StatusCode": 202, "Payload": io.BytesIO(b"")}
        assert InvocationType == "RequestResponse"
        try:
            result = self._container.submit(self._handler, event, context).result()
        except Exception as exc:  # what Lambda reports for a handler that raised
            body = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}).encode()
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(body)}
        return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": io.BytesIO(json.dumps(result).encode())}

    def drain(self) -> None:
        """Return once every event accepted so far has run (the one container runs them in order)."""
        self._container.submit(lambda: None).result()

    def close(self) -> None:
        """End the container: what Lambda reclaims, the test must close (the app's clients, the loop)."""
        self._container.submit(self._end_container).result()
        self._container.shutdown(wait=True)

    def _end_container(self) -> None:
        end_handler(self._handler)
        asyncio.get_event_loop().close()


def end_handler(handler: Handler) -> None:
    """Close what a Lambda handler's app holds, on the event loop Mangum ran it on (this thread's)."""
    app = getattr(handler, "app", None)
    if isinstance(app, Starlette):
        asyncio.get_event_loop().run_until_complete(_shut_down(app))


async def _shut_down(app: Starlette) -> None:
    # The handler runs with lifespan off; entering and leaving the lifespan runs only its shutdown
    # half here, since the apps' startup half is empty (their clients are built in create_app).
    async with app.router.lifespan_context(app):
        pass

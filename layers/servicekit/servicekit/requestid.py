"""``X-Request-ID``: taken from the request when it is sane, generated otherwise, echoed on every reply."""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_STATE_KEY = "request_id"


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(scope: Scope) -> str:
    """The request id the middleware stored; a fresh one outside it (never empty)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    value = state.get(_STATE_KEY)
    if not isinstance(value, str):
        value = new_request_id()
        state[_STATE_KEY] = value
    return value


def _incoming(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            return text if _ACCEPTABLE.match(text) else None
    return None


class RequestIdMiddleware:
    """Stores the request id in ``scope["state"]`` and adds it to the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming(scope) or new_request_id()
        scope.setdefault("state", {})[_STATE_KEY] = rid
        header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message["headers"] = [*headers, header]
            await send(message)

        await self.app(scope, receive, send_with_id)

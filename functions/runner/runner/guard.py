"""The runner answers chat, and nobody else.

- With ``RUNNER_TOKEN`` (``make up`` makes one per run; compose reads it from ``.env``): a
  request must carry ``Authorization: Bearer <token>``, compared in constant time.
- Without it: only requests from a loopback address (the runner logs this at start).
- On AWS (the request comes through a Lambda invoke): IAM already lets only chat invoke the
  function, so the invoke itself is the credential.

Only a trusted request's ``X-Caller-*`` headers name the caller; the probes (``/healthz``,
``/readyz``) are open, so health checks need no secret.
"""

from __future__ import annotations

import hmac
import ipaddress

from servicekit.callers import caller_from_headers, set_caller
from servicekit.errors import Unauthorized
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

NOT_CHAT = "The runner answers chat only."


def _from_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def _bearer(headers: Headers) -> str:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


class ChatOnly:
    """Route middleware: refuses anything but chat (``Unauthorized``), then records the caller chat named."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def trusted(self, scope: Scope, headers: Headers) -> bool:
        if "aws.context" in scope:
            return True
        if self.token:
            return hmac.compare_digest(_bearer(headers).encode(), self.token)
        return _from_loopback(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            if not self.trusted(scope, headers):
                raise Unauthorized(NOT_CHAT)
            set_caller(scope, caller_from_headers(headers))
        await self.app(scope, receive, send)


def startup_notice(token: str) -> str | None:
    if token:
        return None
    return "RUNNER_TOKEN is not set: the runner answers only requests from loopback addresses."

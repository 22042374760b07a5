"""Who may call chat: API keys, or the client's address when auth is off.

A key comes as ``Authorization: Bearer <key>`` (what OpenAI clients send) or ``X-API-Key: <key>``.
Unknown, revoked and malformed keys all get the same ``401`` (never saying whether a key
exists). Each process caches lookups for ``KEY_CACHE_TTL_S`` (5 s), so a cached check costs a
SHA-256 and a dict lookup, and a revocation applies everywhere within that time.

``AUTH``:

- ``required``: every protected route needs a valid key (compose and AWS set this);
- ``off``: no key needed; a valid key still names the caller, any other is ignored. Otherwise the
  caller is the client address (``X-Forwarded-For``'s last hop when ``TRUST_PROXY_HEADERS`` is set);
- unset (``auto``): ``off`` for requests that arrive on a loopback address while no key exists
  (the first ``make up``), ``required`` for everything else.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Literal

from servicekit.callers import Caller, set_caller
from servicekit.errors import Unauthorized
from servicekit.state.keys import ApiKey, KeyStore, hash_key, looks_like_key
from starlette.types import ASGIApp, Receive, Scope, Send

AuthMode = Literal["required", "off", "auto"]
AUTH_MODES: tuple[AuthMode, ...] = ("required", "off", "auto")
DEFAULT_KEY_CACHE_TTL_S = 5.0
# Bounds the memory a flood of random keys can take; past it the cache starts over.
MAX_CACHED_KEYS = 10_000
KEY_REQUIRED = "An API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
KEY_INVALID = "The API key is not valid."

logger = logging.getLogger("chat.auth")


def presented_key(scope: Scope) -> str | None:
    """The key in ``Authorization: Bearer`` or ``X-API-Key``, if any (an empty one counts as presented)."""
    name: bytes
    value: bytes
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
        elif name == b"x-api-key":
            return value.decode("latin-1").strip()
    return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Authenticator:
    def __init__(
        self,
        keys: KeyStore,
        *,
        mode: AuthMode,
        trust_proxy_headers: bool = False,
        cache_ttl_s: float = DEFAULT_KEY_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.mode = mode
        self.trust_proxy_headers = trust_proxy_headers
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._any_active: tuple[float, bool] | None = None

    async def caller(self, scope: Scope) -> Caller:
        """The caller of this request, or ``Unauthorized``."""
        key = presented_key(scope)
        record = await self._valid(key) if key is not None else None
        if record is not None:
            return self._keyed(record)
        if await self._open_to(scope):
            # Open: a key that is not valid is ignored, as servers without auth do (OpenAI clients
            # always send one, e.g. "unused"); a valid one still names the caller.
            return Caller(name=self.address(scope))
        raise Unauthorized(KEY_REQUIRED if key is None else KEY_INVALID)

    async def _valid(self, key: str) -> ApiKey | None:
        record = await self._lookup(hash_key(key)) if looks_like_key(key) else None
        return None if record is None or record["revoked_at"] is not None else record

    @staticmethod
    def _keyed(record: ApiKey) -> Caller:
        models = record["models"]
        return Caller(
            name=record["name"],
            weight=record["weight"],
            max_waiting=record["max_waiting"],
            models=tuple(models) if models else None,
            keyed=True,
        )

    async def _lookup(self, key_hash: str) -> ApiKey | None:
        now = self._clock()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self.keys.lookup(key_hash)
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache.clear()
        self._cache[key_hash] = (now + self.cache_ttl_s, record)
        return record

    async def _open_to(self, scope: Scope) -> bool:
        if self.mode != "auto":
            return self.mode == "off"
        server = scope.get("server")
        return server is not None and _is_loopback(str(server[0])) and not await self.any_active()

    async def any_active(self) -> bool:
        """Whether some key exists (cached like the keys themselves)."""
        now = self._clock()
        if self._any_active is None or self._any_active[0] <= now:
            self._any_active = (now + self.cache_ttl_s, await self.keys.any_active())
        return self._any_active[1]

    def address(self, scope: Scope) -> str:
        """The client's address: the socket peer, or the proxy's last ``X-Forwarded-For`` hop if trusted."""
        if self.trust_proxy_headers:
            for name, value in scope.get("headers", ()):
                if name == b"x-forwarded-for":
                    last = value.decode("latin-1").rsplit(",", 1)[-1].strip()
                    try:
                        return str(ipaddress.ip_address(last))
                    except ValueError:
                        break
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    async def startup_notice(self, add_command: str = "python -m chat.keys add NAME") -> str:
        """One line for the log at start: how this chat decides who may call it.

        ``add_command`` is the exact command that adds a key this chat will see (its store named).
        """
        create = f"create one with `{add_command}`"
        if self.mode == "off":
            return "AUTH=off: no API key is needed; callers are told apart by their address."
        if await self.any_active():
            setting = "AUTH=required" if self.mode == "required" else "AUTH is not set and API keys exist"
            return f"{setting}: every generation needs an API key."
        if self.mode == "required":
            return f"AUTH=required and no API key exists yet: generations answer 401 until you {create}."
        return (
            "AUTH is not set and no API key exists yet: requests arriving on a loopback address are served "
            f"without a key (the caller is the client address), all others need one; {create} to require keys."
        )


class Authenticate:
    """Route middleware: stores the caller in the scope, or raises ``Unauthorized`` (mapped like any error)."""

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            set_caller(scope, await self.auth.caller(scope))
        await self.app(scope, receive, send)

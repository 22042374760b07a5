"""API keys: what a caller presents, what is stored (only a hash), and what a key store does.

A key is ``oc-`` followed by 43 URL-safe characters (256 random bits). Being random and long,
one SHA-256 is all the hashing it needs: there is nothing to brute-force that a slow hash
would protect (unlike a password).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Protocol, TypedDict

KEY_PREFIX = "oc-"
KEY_BYTES = 32
# Names appear in logs and metric labels: short, plain, and never anything a caller sends.
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ApiKey(TypedDict):
    name: str  # unique; shown in logs and metrics
    key_hash: str  # SHA-256 of the whole key, hex
    created_at: float  # epoch seconds
    revoked_at: float | None
    weight: int  # turns per round in the fair queue
    max_waiting: int | None  # None: the deployment's MAX_WAITING_PER_CALLER
    models: list[str] | None  # None: every model in ALLOWED_MODELS


class KeyNameTaken(ValueError):
    """A key with this name exists already (revoked or not: names are never reused)."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(
    name: str,
    *,
    now: float,
    weight: int = 1,
    max_waiting: int | None = None,
    models: list[str] | None = None,
) -> tuple[str, ApiKey]:
    """A new key (shown once) and the record to store: only its hash is kept."""
    key = new_key()
    record: ApiKey = {
        "name": name,
        "key_hash": hash_key(key),
        "created_at": now,
        "revoked_at": None,
        "weight": weight,
        "max_waiting": max_waiting,
        "models": models,
    }
    return key, record


def looks_like_key(value: str) -> bool:
    """Cheap shape check before any lookup: our prefix and a plausible length."""
    return value.startswith(KEY_PREFIX) and 20 <= len(value) <= 200


class KeyStore(Protocol):
    async def add(self, key: ApiKey) -> None:
        """Store a new key; raises ``KeyNameTaken`` when the name is in use."""
        ...

    async def lookup(self, key_hash: str) -> ApiKey | None:
        """The key with this hash (revoked ones too), or None."""
        ...

    async def revoke(self, name: str, *, now: float) -> bool:
        """Mark the named key revoked; False when no unrevoked key has that name."""
        ...

    async def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        ...

    async def any_active(self) -> bool:
        """Whether at least one unrevoked key exists."""
        ...

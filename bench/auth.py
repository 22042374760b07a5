"""The cost of the auth check per request: ``Authenticator.caller`` on a cached key, in-process."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from chat.auth import Authenticator
from servicekit.state.factory import StateSettings, key_store
from servicekit.state.keys import new_api_key

from bench.measure import percentile


async def auth_check_us(rounds: int = 20_000) -> tuple[float, float]:
    """p50 and p99, in microseconds, of identifying a caller by a valid key that is in the cache."""
    with tempfile.TemporaryDirectory() as tmp:
        store = key_store(StateSettings(directory=str(Path(tmp) / "state")))
        key, record = new_api_key("bench", now=time.time())
        await store.add(record)
        auth = Authenticator(store, mode="required", cache_ttl_s=3600)
        scope = {
            "type": "http",
            "headers": [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())],
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
        }
        await auth.caller(scope)  # the one store lookup; the rest hit the per-process cache
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            await auth.caller(scope)
            samples.append((time.perf_counter() - started) * 1e6)
    return percentile(samples, 50), percentile(samples, 99)

"""``GET /metrics``: the Prometheus text of every process on this host, for operators only.

Readable with an API key whose name is in METRICS_KEYS, or — by a caller named by address,
when no key is needed — from a loopback address only. Jobs by status, keys known and the
queue (depth by class, oldest waiting ticket) are read from the state at scrape time: exact
however many processes share it (SQLite; on AWS the measures are EMF lines).
"""

from __future__ import annotations

import ipaddress
import time

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from servicekit.callers import caller_of
from servicekit.errors import Forbidden
from servicekit.observe.metrics import PrometheusMetrics, exposition, gauge, queue_gauges
from servicekit.observe.queue import queue_measures
from servicekit.queue.store import QueueStore
from servicekit.state.factory import StateSettings, state_database
from servicekit.state.stats import state_counts
from starlette.requests import Request
from starlette.responses import Response

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")


def _loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


class MetricsEndpoint:
    def __init__(
        self,
        metrics: PrometheusMetrics,
        *,
        keys: tuple[str, ...],
        multiprocess_dir: str,
        state: StateSettings,
        queue: QueueStore | None,
    ) -> None:
        self.metrics = metrics
        self.queue = queue
        self.keys = frozenset(keys)
        self.multiprocess_dir = multiprocess_dir
        self.state = state

    def _check(self, request: Request) -> None:
        caller = caller_of(request.scope)
        if caller.keyed:
            if caller.name not in self.keys:
                raise Forbidden("This API key may not read /metrics (its name is not in METRICS_KEYS).")
        elif not _loopback(request):
            raise Forbidden("/metrics needs an API key named in METRICS_KEYS (or a loopback client when auth is off).")

    async def _state_gauges(self) -> list[Metric]:
        if self.state.table:
            return []
        counts = await state_counts(state_database(self.state.directory), now=time.time())
        jobs: dict[tuple[str, ...], float] = {
            (status,): float(counts["jobs"].get(status, 0)) for status in JOB_STATUSES
        }
        keys: dict[tuple[str, ...], float] = {
            ("active",): float(counts["keys_active"]),
            ("revoked",): float(counts["keys_revoked"]),
        }
        return [
            gauge("jobs", "Jobs in the store, by status.", jobs, ["status"]),
            gauge("keys", "API keys known, by state.", keys, ["state"]),
        ]

    async def _queue_gauges(self) -> list[Metric]:
        if self.queue is None:
            return []
        now = time.time()
        return queue_gauges(queue_measures(await self.queue.snapshot(now=now), now=now))

    async def metrics_text(self, request: Request) -> Response:
        self._check(request)
        body = exposition(self.metrics, self.multiprocess_dir, await self._state_gauges() + await self._queue_gauges())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

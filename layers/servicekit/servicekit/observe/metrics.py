"""Prometheus measures of both services, and the ``/metrics`` text chat serves.

One :class:`PrometheusMetrics` per process holds every family. With ``PROMETHEUS_MULTIPROC_DIR``
set (prometheus_client's own variable, read by it at import), each process writes its samples
to files there and :func:`exposition` adds up every process's files — the runner's uvicorn
workers, and on one host chat and the runner (compose: ``<dir>/runner`` beside chat's own
files, since containers may reuse pids). Without it, the families live in this process only
(tests chain both apps in one process over one instance).

Labels come from bounded sets only: route templates, status codes, error codes, allowed
models, ticket classes, and callers by their key's name (callers named by address are
``anonymous``).

The queue (see :mod:`servicekit.observe.queue`): the slot reports each grant's wait by class and
``slot_busy`` (:class:`PrometheusMetrics` is the runner's :class:`SlotObserver`); depth by class
and the oldest ticket's age are read from the store at scrape time (:func:`queue_gauges`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from servicekit.observe.queue import QueueMeasures
from servicekit.observe.record import ANONYMOUS, RequestRecord
from servicekit.queue.model import Snapshot, TicketClass

PREFIX = "ollama_chat_"
# Seconds: a tiny model answers in tens of ms, a long job in minutes.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
SPEED_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class PrometheusMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            PREFIX + "requests", "Requests answered, by outcome.", ["service", "route", "status", "code"], registry=r
        )
        self.generation_seconds = Histogram(
            PREFIX + "generation_seconds",
            "Ollama's total time per generation.",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            PREFIX + "first_token_seconds",
            "Load plus prompt evaluation: the time before the first token.",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            PREFIX + "tokens_per_second", "Generation speed.", ["model"], buckets=SPEED_BUCKETS, registry=r
        )
        self.queue_wait_seconds = Histogram(
            PREFIX + "queue_wait_seconds",
            "Wait in the queue of each ticket that got the slot.",
            ["class"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens_in = Counter(PREFIX + "tokens_in", "Prompt tokens.", ["model", "caller"], registry=r)
        self.tokens_out = Counter(PREFIX + "tokens_out", "Generated tokens.", ["model", "caller"], registry=r)
        # "max" across processes: the slot is host-wide, so any process holding it means busy.
        self.slot_busy = Gauge(
            PREFIX + "slot_busy", "1 while a generation holds the slot.", registry=r, multiprocess_mode="livemax"
        )
        self.ollama_up = Gauge(
            PREFIX + "ollama_up",
            "1 when Ollama answered the last readiness probe.",
            registry=r,
            multiprocess_mode="mostrecent",
        )

    def observe(self, record: RequestRecord) -> None:
        route = record.route or "unmatched"
        self.requests.labels(record.service, route, str(record.status), record.error_code or "").inc()
        if not record.generated_here:
            return  # counted by the service that ran it
        model = record.model or "unknown"
        caller = record.caller if record.caller_keyed and record.caller else ANONYMOUS
        if record.generation_ms is not None:
            self.generation_seconds.labels(model).observe(record.generation_ms / 1000)
        if record.first_token_ms is not None:
            self.first_token_seconds.labels(model).observe(record.first_token_ms / 1000)
        if record.tokens_per_s is not None:
            self.tokens_per_second.labels(model).observe(record.tokens_per_s)
        if record.tokens_in:
            self.tokens_in.labels(model, caller).inc(record.tokens_in)
        if record.tokens_out:
            self.tokens_out.labels(model, caller).inc(record.tokens_out)

    # -- the slot (SlotObserver) ------------------------------------------------------------------

    def slot_granted(self, ticket_class: TicketClass, queue_ms: float) -> None:
        self.queue_wait_seconds.labels(ticket_class).observe(queue_ms / 1000)
        self.slot_busy.set(1)

    def slot_released(self) -> None:
        self.slot_busy.set(0)

    def queue_read(self, snapshot: Snapshot, *, now: float) -> None:
        """Nothing to do: ``/metrics`` reads the queue itself when scraped (:func:`queue_gauges`)."""


class _AllProcesses(Collector):
    """Every ``*.db`` under the multiprocess directory (and its subdirectories), added up."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> list[Metric]:
        files = glob.glob(os.path.join(self.directory, "**", "*.db"), recursive=True)
        return list(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def gauge(name: str, documentation: str, values: Mapping[tuple[str, ...], float], labels: list[str]) -> Metric:
    """A gauge family computed at scrape time (jobs by state, keys known, the queue)."""
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


def queue_gauges(measures: QueueMeasures) -> list[Metric]:
    """The queue as the store holds it now (read at scrape: exact across every process)."""
    depth: dict[tuple[str, ...], float] = {(klass,): float(count) for klass, count in measures.depth.items()}
    return [
        gauge("queue_depth", "Tickets waiting, by class.", depth, ["class"]),
        gauge(
            "queue_oldest_wait_seconds",
            "How long the oldest waiting ticket has waited.",
            {(): measures.oldest_wait_s},
            [],
        ),
    ]


def exposition(metrics: PrometheusMetrics, multiprocess_dir: str, extra: list[Metric]) -> bytes:
    """The text format: every process's samples (or this one's), plus gauges computed now."""
    registry = CollectorRegistry()
    if multiprocess_dir:
        registry.register(_AllProcesses(multiprocess_dir))
    else:
        registry.register(_Snapshot(list(metrics.registry.collect())))
    registry.register(_Snapshot(extra))
    return generate_latest(registry)

"""On Lambda: the same measures as CloudWatch embedded-metric-format lines, and the request log, via Powertools.

CloudWatch turns each EMF document on stdout into metrics, with no agent and no API call in the
request path. Dimensions are chosen so each metric has few combinations (every combination is
a billed custom metric): outcomes by service, route, status and code; generation measures by
model; tokens by model and caller (key names only); the queue's wait and depth by class, and
its oldest ticket's age with no dimension but the service (what ``OldestTicketAgeAlarm`` watches).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from servicekit.observe.logs import request_fields
from servicekit.observe.queue import QUEUE_REPORT_S, queue_measures
from servicekit.observe.record import ANONYMOUS, RequestRecord
from servicekit.queue.model import Snapshot, TicketClass

NAMESPACE = "ServerlessOllamaChat"


class EmfMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.metrics = Metrics(namespace=NAMESPACE, service=service)

    def observe(self, record: RequestRecord) -> None:
        self.metrics.add_dimension("route", record.route or "unmatched")
        self.metrics.add_dimension("status", str(record.status))
        self.metrics.add_dimension("code", record.error_code or "none")
        self.metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        self.metrics.add_metric(name="RequestDuration", unit=MetricUnit.Milliseconds, value=record.duration_ms)
        self.metrics.flush_metrics()
        if not record.generated_here:
            return
        by_model = {"service": self.service, "model": record.model or "unknown"}
        measures = [
            ("GenerationTime", MetricUnit.Milliseconds, record.generation_ms),
            ("TimeToFirstToken", MetricUnit.Milliseconds, record.first_token_ms),
            ("TokensPerSecond", MetricUnit.CountPerSecond, record.tokens_per_s),
        ]
        for name, unit, value in measures:
            if value is not None:
                with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE, default_dimensions=by_model):
                    pass
        caller = record.caller if record.caller_keyed and record.caller else ANONYMOUS
        for name, count in (("TokensIn", record.tokens_in), ("TokensOut", record.tokens_out)):
            if count:
                dimensions = {**by_model, "caller": caller}
                with single_metric(
                    name=name, unit=MetricUnit.Count, value=count, namespace=NAMESPACE, default_dimensions=dimensions
                ):
                    pass


class EmfSlotMetrics:
    """The runner's :class:`~servicekit.observe.queue.SlotObserver` on Lambda."""

    def __init__(self, service: str, *, report_every_s: float = QUEUE_REPORT_S) -> None:
        self.service = service
        self.report_every_s = report_every_s
        self._reported_at = float("-inf")

    def _emit(self, name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
        with single_metric(
            name=name,
            unit=unit,
            value=value,
            namespace=NAMESPACE,
            default_dimensions={"service": self.service, **dimensions},
        ):
            pass

    def slot_granted(self, ticket_class: TicketClass, queue_ms: float) -> None:
        self._emit("QueueWait", MetricUnit.Milliseconds, queue_ms, **{"class": ticket_class})

    def slot_released(self) -> None:
        pass

    def queue_read(self, snapshot: Snapshot, *, now: float) -> None:
        # The dispatcher reads the queue 4 times a second while anything waits: report a sample.
        if now - self._reported_at < self.report_every_s:
            return
        self._reported_at = now
        measures = queue_measures(snapshot, now=now)
        self._emit("OldestTicketAgeSeconds", MetricUnit.Seconds, measures.oldest_wait_s)
        for ticket_class, depth in measures.depth.items():
            self._emit("QueueDepth", MetricUnit.Count, depth, **{"class": ticket_class})


class LambdaRequestLog:
    """Powertools' Logger: one JSON line per request on stdout, with the invocation's fields."""

    def __init__(self, service: str, *, content: bool) -> None:
        self.logger = Logger(service=service)
        self.content = content

    def observe(self, record: RequestRecord) -> None:
        self.logger.info("request", extra=request_fields(record, content=self.content))

"""On Lambda: the same measures as CloudWatch embedded-metric-format lines, and the request log, via Powertools.

CloudWatch turns each EMF document on stdout into metrics, with no agent and no API call in the
request path. Dimensions are chosen so each metric has few combinations (every combination is
a billed custom metric): outcomes by service, route, status and code; generation measures by
model; tokens by model and caller (key names only).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from servicekit.observe.logs import request_fields
from servicekit.observe.record import ANONYMOUS, RequestRecord

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
            ("SlotWait", MetricUnit.Milliseconds, record.queue_ms),
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


class LambdaRequestLog:
    """Powertools' Logger: one JSON line per request on stdout, with the invocation's fields."""

    def __init__(self, service: str, *, content: bool) -> None:
        self.logger = Logger(service=service)
        self.content = content

    def observe(self, record: RequestRecord) -> None:
        self.logger.info("request", extra=request_fields(record, content=self.content))

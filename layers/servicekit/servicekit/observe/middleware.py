"""``ObserveRequests``: the one ASGI middleware both apps install, outermost.

It starts a :class:`RequestRecord` in the scope, counts the bytes each way, notes the status
line, and once the response is over (or the request failed or was abandoned) completes the
record — request id, caller, route template — and hands it to each observer (the log line,
the metrics). An observer that fails is logged and never breaks the request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.callers import caller_or_none
from servicekit.observe.record import RequestRecord, start_record
from servicekit.observe.settings import ObserveSettings
from servicekit.requestid import request_id_of
from servicekit.state.statedir import private_dir

if TYPE_CHECKING:
    from servicekit.observe.metrics import PrometheusMetrics
    from servicekit.observe.queue import SlotObserver

logger = logging.getLogger("servicekit.observe")


class Observer(Protocol):
    def observe(self, record: RequestRecord) -> None: ...


class ObserveRequests:
    def __init__(self, app: ASGIApp, *, service: str, observers: Sequence[Observer]) -> None:
        self.app = app
        self.service = service
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.observers:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = RequestRecord(service=self.service, method=scope["method"], path=scope["path"])
        start_record(scope, record)
        finished = False

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record.bytes_in += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            elif message["type"] == "http.response.body":
                record.bytes_out += len(message.get("body", b""))
                finished = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException:
            if record.status == 0:  # the server's last-resort handler answers 500
                record.status, record.error_code = 500, record.error_code or "internal_error"
            raise
        finally:
            if not finished and record.status != 0 and not record.error_code:
                record.error_code = "client_disconnected"  # the reply was cut short
            record.duration_ms = (time.perf_counter() - started) * 1000
            self._complete(scope, record)

    def _complete(self, scope: Scope, record: RequestRecord) -> None:
        record.request_id = request_id_of(scope)
        route = scope.get("route")
        record.route = str(getattr(route, "path", "")) if route is not None else ""
        caller = caller_or_none(scope)
        if caller is not None:
            record.caller, record.caller_keyed = caller.name, caller.keyed
        report(self.observers, record)


def report(observers: Sequence[Observer], record: RequestRecord) -> None:
    """Hand a finished record to every observer; one that fails is logged, never the request's problem."""
    for observer in observers:
        try:
            observer.observe(record)
        except Exception:
            logger.exception("an observer failed (%s)", type(observer).__name__)


def observers_for(service: str, settings: ObserveSettings, metrics: Observer | None) -> list[Observer]:
    """The log line and the metrics this service reports each request to."""
    if settings.metrics == "emf":
        from servicekit.observe.emf import EmfMetrics, LambdaRequestLog

        return [LambdaRequestLog(service, content=settings.log_content), EmfMetrics(service)]
    from servicekit.observe.logs import RequestLog, configure_logging

    configure_logging(settings.log_format)
    observers: list[Observer] = [RequestLog(service, log_format=settings.log_format, content=settings.log_content)]
    if metrics is not None:
        observers.append(metrics)
    return observers


def slot_observer_for(
    service: str, settings: ObserveSettings, metrics: PrometheusMetrics | None
) -> SlotObserver | None:
    """Who hears of the runner's slot: the Prometheus families, or EMF lines on Lambda (off: nobody)."""
    if settings.metrics == "emf":
        from servicekit.observe.emf import EmfSlotMetrics

        return EmfSlotMetrics(service)
    return metrics


def prometheus_metrics(settings: ObserveSettings) -> PrometheusMetrics | None:
    """This process's Prometheus families, or None (emf, off)."""
    if settings.metrics != "prometheus":
        return None
    if settings.multiprocess_dir:
        private_dir(settings.multiprocess_dir)  # 0700, parents too; refused if shared or a link
    from servicekit.observe.metrics import PrometheusMetrics

    return PrometheusMetrics()

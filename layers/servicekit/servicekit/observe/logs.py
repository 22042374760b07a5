"""One log line per request: JSON for collectors (python-json-logger), readable text for a terminal.

Records go to the stdlib logger ``<service>.requests``; :func:`configure_logging` gives the
root logger one stderr handler with the chosen formatter, so the services' other lines
(warnings, tracebacks) come out in the same format. Prompts and answers are never logged
unless LOG_CONTENT=1.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from servicekit.observe.record import RequestRecord
from servicekit.observe.settings import LogFormat

# The fields of a request line, in this order (None values are left out).
FIELDS = (
    "request_id",
    "service",
    "caller",
    "method",
    "route",
    "path",
    "model",
    "stream",
    "status",
    "error_code",
    "queue_ms",
    "generation_ms",
    "first_token_ms",
    "tokens_in",
    "tokens_out",
    "tokens_per_s",
    "bytes_in",
    "bytes_out",
    "duration_ms",
)
CONTENT_FIELDS = ("prompt", "answer")
_HANDLER_NAME = "servicekit.observe"


def request_fields(record: RequestRecord, *, content: bool) -> dict[str, Any]:
    names = FIELDS + CONTENT_FIELDS if content else FIELDS
    values = {name: getattr(record, name) for name in names}
    values["duration_ms"] = round(record.duration_ms, 3)
    return {name: value for name, value in values.items() if value is not None and value != ""}


class _TextFormatter(logging.Formatter):
    """``time level logger message key=value ...``: a request line a person can read."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        # rename: the standard attributes get short, conventional names; "request" is flattened below.
        return JsonFormatter("{asctime}{levelname}{name}{message}", style="{", rename_fields={"levelname": "level"})
    return _TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (a test runner swaps it), like logging's last resort."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(log_format: LogFormat) -> None:
    """One handler on the root logger (replacing an earlier one of ours); idempotent per process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


class RequestLog:
    def __init__(self, service: str, *, log_format: LogFormat, content: bool) -> None:
        self.logger = logging.getLogger(f"{service}.requests")
        self.json = log_format == "json"
        self.content = content

    def observe(self, record: RequestRecord) -> None:
        fields = request_fields(record, content=self.content)
        # JSON: the fields are top-level keys; text: one "request" dict the text formatter appends.
        self.logger.info("request", extra=fields if self.json else {"request": fields})

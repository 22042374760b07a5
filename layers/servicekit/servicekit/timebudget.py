"""A caller's time budget, handed to the runner as ``X-Time-Left-Ms``.

On AWS chat lives under a hard limit (its Lambda timeout, inside API Gateway's 30 s) while the
runner it invokes may run for 900 s and holds the one slot (reserved concurrency 1) while it
does. Without a budget, a generation longer than chat's limit would go on after chat was
killed, for nobody, and every later request would be throttled until it ended. So chat's
Lambda transport sends the time it has left with each invoke, and the runner stops waiting and
generating when that time is spent (closing Ollama's request) and answers
``504 deadline_exceeded``. Over HTTP a client that gives up disconnects, which stops the
generation the same way, so the header is not needed there.
"""

from __future__ import annotations

from collections.abc import Mapping

from servicekit.errors import InvalidRequest

TIME_LEFT_HEADER = "x-time-left-ms"


def time_left_header(seconds: float) -> str:
    """The header's value for ``seconds`` left (whole milliseconds, never negative)."""
    return str(max(0, int(seconds * 1000)))


def time_left_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the caller gave this request, or None when it set no budget."""
    raw = headers.get(TIME_LEFT_HEADER)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise InvalidRequest(f"{TIME_LEFT_HEADER} must be a whole number of milliseconds, got {raw!r}.")
    return int(raw) / 1000

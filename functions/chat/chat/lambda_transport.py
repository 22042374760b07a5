"""Reach the runner through ``lambda:Invoke`` instead of HTTP, behind the ordinary httpx transport interface.

Chat builds the same ``httpx.Request`` in every mode; on AWS this transport turns it into an API
Gateway v2 event, invokes the runner function (RequestResponse) off the event loop, and turns
the function's proxy response back into an ``httpx.Response``. Each invoke carries the time this
request has left (``X-Time-Left-Ms``), so the runner never generates past chat's own limit.
botocore's errors are translated here, once:

With the queue (:class:`~chat.lambda_queue.LambdaQueue`, on AWS), a generation first waits its
turn in the queue table and then invokes the runner for its ticket; a throttle at that moment
(the previous invocation still returning) is retried every ``THROTTLE_RETRY_S``, and a runner
that says the turn has passed (a job was promoted ahead) sends it back to waiting. Without it:

- throttled (429 ``TooManyRequestsException``: the runner, reserved concurrency 1, is busy) →
  retried with full-jitter exponential backoff until the request's deadline, then ``RunnerBusy``
  (503 ``runner_busy`` + Retry-After). A request with the ``no_busy_retry`` extension (``/readyz``)
  is not retried; one with ``async_invoke`` (a job) is handed to Lambda's own queue instead;
- the function failed (``FunctionError``) or answered garbage → ``UpstreamError`` (502);
- Lambda cannot be reached → ``UpstreamUnavailable`` (502); no answer in time → ``UpstreamTimeout`` (504).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import unquote

import anyio
import httpx
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from servicekit.callers import caller_from_headers
from servicekit.errors import TurnPassed
from servicekit.lambda_event import LambdaInvoker, http_api_event, response_parts
from servicekit.queue.drain_lease import DRAIN_PATH
from servicekit.timebudget import TIME_LEFT_HEADER, seconds_left, time_left_header

from chat.errors import RunnerBusy, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from chat.lambda_queue import LambdaQueue

THROTTLED = "TooManyRequestsException"
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0
# Chat cannot see the runner's queue on AWS; one typical small-model generation.
BUSY_RETRY_AFTER_S = 5.0
NO_BUSY_RETRY = "no_busy_retry"
# A request with this extension is invoked asynchronously (InvocationType=Event): Lambda queues
# it (up to the runner's MaximumEventAgeInSeconds) while the runner is busy, and answers 202.
ASYNC_INVOKE = "async_invoke"
# With the queue: the runner is free (its finish was written) and returning; try again this soon,
# for at most THROTTLE_PATIENCE_S before reading the queue again.
THROTTLE_RETRY_S = 0.02
THROTTLE_PATIENCE_S = 0.5
QUEUED_PATHS = ("/v1/run/", "/v1/embed/")
TICKET_HEADER = "x-queue-ticket"


class _Throttled(Exception):
    """The runner function is at its reserved concurrency (429 TooManyRequestsException)."""


def full_jitter(attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
    return rng(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class LambdaInvokeTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        invoker: LambdaInvoker,
        function_name: str,
        *,
        default_deadline_s: float,
        backoff: Callable[[int], float] = full_jitter,
        queue: LambdaQueue | None = None,
    ) -> None:
        self._invoker = invoker
        self._function = function_name
        self._default_deadline_s = default_deadline_s
        self._backoff = backoff
        self._queue = queue

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        event = http_api_event(
            request.method,
            request.url.path,
            headers=dict(request.headers),
            body=body,
            query=request.url.query.decode(),
            domain=request.url.host,
        )
        if request.extensions.get(ASYNC_INVOKE, False):
            await self._invoke("Event", json.dumps(event).encode())
            return httpx.Response(202, json={"status": "queued"}, request=request)
        if self._queue is not None and request.url.path.startswith(QUEUED_PATHS):
            return await self._in_turn(self._queue, request, dict(event))
        retry = not request.extensions.get(NO_BUSY_RETRY, False)
        attempt = 0
        while True:
            # The runner stops when chat's time is up instead of generating on for nobody, holding
            # the one slot after this function was killed (see servicekit.timebudget).
            event["headers"][TIME_LEFT_HEADER] = time_left_header(seconds_left(self._default_deadline_s))
            try:
                result = await self._invoke("RequestResponse", json.dumps(event).encode())
                break
            except _Throttled as throttled:
                left = seconds_left(self._default_deadline_s)
                if not retry or left <= 0:
                    raise RunnerBusy(
                        "The runner is busy with another generation; try again later.",
                        retry_after_s=BUSY_RETRY_AFTER_S,
                    ) from throttled.__cause__
                # A long jitter draw is cut to the time left, so the last try lands at the deadline
                # instead of giving up early with budget unspent.
                await anyio.sleep(min(self._backoff(attempt), left))
                attempt += 1
        return self._response(result, request)

    async def _in_turn(self, queue: LambdaQueue, request: httpx.Request, event: dict[str, Any]) -> httpx.Response:
        """Wait for the ticket's turn in the queue table, then invoke the runner for it."""
        model = unquote(request.url.path.split("/", 3)[3])
        turn = await queue.join(caller_from_headers(request.headers), model)
        ran = False
        try:
            while True:
                await queue.wait(turn, lambda: seconds_left(self._default_deadline_s), self.kick)
                waited_ms = turn.waited_ms
                left = time_left_header(seconds_left(self._default_deadline_s))
                event["headers"] = {**event["headers"], TICKET_HEADER: turn.ticket_id, TIME_LEFT_HEADER: left}
                try:
                    result = await self._invoke_now(json.dumps(event).encode())
                except _Throttled:
                    continue  # still busy after THROTTLE_PATIENCE_S: read the queue again
                response = self._response(result, request)
                if response.status_code == TurnPassed.status and _error_code(response) == TurnPassed.code:
                    continue
                ran = response.status_code == 200  # the runner claimed and finished the ticket
                response.headers["X-Queue-Position"] = str(turn.admitted.position)
                response.headers["X-Queue-Wait-Ms"] = f"{waited_ms:.1f}"
                return response
        finally:
            if not ran:
                await queue.leave(turn)

    async def _invoke_now(self, payload: bytes) -> Mapping[str, Any]:
        """Invoke the runner, retrying a throttle every THROTTLE_RETRY_S for THROTTLE_PATIENCE_S."""
        patience_ends = time.monotonic() + THROTTLE_PATIENCE_S
        while True:
            try:
                return await self._invoke("RequestResponse", payload)
            except _Throttled:
                if time.monotonic() >= patience_ends:
                    raise
                await anyio.sleep(THROTTLE_RETRY_S)

    async def kick(self) -> None:
        """Start a drain of the queue's jobs: one asynchronous invoke (a no-op if there is none)."""
        await self._invoke("Event", json.dumps(http_api_event("POST", DRAIN_PATH, headers={})).encode())

    async def _invoke(self, invocation_type: str, payload: bytes) -> Mapping[str, Any]:
        """One invoke, off the event loop; botocore's errors translated (a throttle as ``_Throttled``)."""

        def call() -> Mapping[str, Any]:
            return self._invoker.invoke(FunctionName=self._function, InvocationType=invocation_type, Payload=payload)

        try:
            return await anyio.to_thread.run_sync(call)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == THROTTLED:
                raise _Throttled from exc
            raise UpstreamError(f"Invoking the runner failed: {code}.") from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise UpstreamUnavailable("The runner function cannot be reached.") from exc
        except ReadTimeoutError as exc:
            raise UpstreamTimeout("The runner function did not answer in time.") from exc
        except BotoCoreError as exc:
            raise UpstreamError(f"Invoking the runner failed: {type(exc).__name__}.") from exc

    @staticmethod
    def _response(result: Mapping[str, Any], request: httpx.Request) -> httpx.Response:
        raw = result["Payload"].read()
        if result.get("FunctionError"):
            try:
                kind = json.loads(raw).get("errorType", "unknown")
            except (ValueError, AttributeError):
                kind = "unknown"
            raise UpstreamError(f"The runner function failed ({kind}).")
        try:
            status, headers, body = response_parts(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UpstreamError("The runner function answered something that is not an HTTP response.") from None
        headers.pop("content-length", None)  # recomputed from the decoded body
        return httpx.Response(status, headers=headers, content=body, request=request)


def _error_code(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def boto3_lambda_client(read_timeout_s: float, connect_timeout_s: float) -> LambdaInvoker:
    """One client per container: no botocore retries (we retry throttles ourselves, to a deadline)."""
    import boto3
    from botocore.config import Config

    config = Config(
        # One attempt in all. (botocore's "max_attempts" counts retries *after* the first try:
        # {"max_attempts": 1} would still retry a throttle once, blind to our deadline.)
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=read_timeout_s,
        connect_timeout=connect_timeout_s,
        tcp_keepalive=True,
    )
    # boto3's typed client takes these keywords among many others; the Protocol names the ones we use.
    return cast(LambdaInvoker, boto3.client("lambda", config=config))

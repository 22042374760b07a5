"""A stand-in for boto3's Lambda client whose ``invoke`` runs a real Lambda handler, as a container would.

Each container owns one thread with one event loop, like a warm Lambda container: Mangum needs
a current event loop in the thread that calls the handler.

By default there is one container and invokes wait for it in turn (enough for most tests). With
``reserved_concurrency`` it behaves as Lambda does at that limit:

- a synchronous invoke beyond it raises ``TooManyRequestsException`` (429), as botocore would;
- an asynchronous invoke is accepted at once (202) and attempted now; a throttled attempt goes
  back to the queue and is retried "exponentially from 1 second after the first attempt to a
  maximum of 5 minutes" (AWS: "How Lambda handles errors and retries with asynchronous
  invocation"), multiplied by ``time_scale`` so tests and the bench run in compressed time; an
  event older than ``max_event_age_s`` (scaled) is dropped (``expired_events``); a function
  error is retried ``retry_attempts`` times, 1 and then 2 minutes (scaled) later.
- ``kill()`` stops the running invocation dead, as a crash or a timeout does: its event loop stops,
  no ``finally`` of it runs, and the next invocation gets a new container (``new_handler()``).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from starlette.applications import Starlette

from local.lambda_context import LambdaContext
from tests.waiting import until

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
THROTTLE_FIRST_RETRY_S = 1.0
THROTTLE_MAX_RETRY_S = 300.0
ERROR_RETRY_S = (60.0, 120.0)


def throttled() -> ClientError:
    """What botocore raises when reserved concurrency is reached (its parsed error response)."""
    response: Any = {
        "Error": {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."},
        "ResponseMetadata": {"HTTPStatusCode": 429},
    }
    return ClientError(response, "Invoke")


@dataclass(eq=False)
class _Container:
    handler: Handler
    executor: ThreadPoolExecutor = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None
    dead: bool = False

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, initializer=self._start)

    def _start(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)


@dataclass
class Attempt:
    """One run of the handler (the bench's record): when, for which path, how it ended."""

    path: str
    kind: str  # "sync" or "async"
    started: float
    ended: float = 0.0
    outcome: str = "ok"  # ok, error, killed


class InProcessLambda:
    def __init__(
        self,
        handler: Handler,
        function_name: str = "runner-function",
        timeout_s: float = 900,
        *,
        reserved_concurrency: int | None = None,
        new_handler: Callable[[], Handler] | None = None,
        time_scale: float = 1.0,
        max_event_age_s: float = 900,
        retry_attempts: int = 0,
    ) -> None:
        self._handler = handler
        self._function_name = function_name
        self._timeout_s = timeout_s
        self._new_handler = new_handler
        self._limited = reserved_concurrency is not None
        self._slots = threading.BoundedSemaphore(reserved_concurrency or 1)
        self._first = _Container(handler)
        self._idle = [self._first]
        self._running: list[_Container] = []
        self._dead: list[_Container] = []
        self._guard = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._closed = False
        self.time_scale = time_scale
        self.max_event_age_s = max_event_age_s
        self.retry_attempts = retry_attempts
        self.invocations: list[dict[str, Any]] = []
        self.attempts: list[Attempt] = []
        self.throttles = 0
        self.expired_events: list[dict[str, Any]] = []
        self._pending = 0  # asynchronous events not yet run or dropped

    # -- the Lambda API ------------------------------------------------------------------------------

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> Mapping[str, Any]:
        event = json.loads(Payload)
        self.invocations.append(event)
        if InvocationType == "Event":
            if self._limited:
                self._later(0.0, event, time.monotonic(), 0, 0)
            else:  # Lambda's async queue: accepted at once, run when the (single) container is free.
                self._first.executor.submit(self._call, self._first, event, "async")
            return {"StatusCode": 202, "Payload": io.BytesIO(b"")}
        assert InvocationType == "RequestResponse"
        if self._limited and not self._slots.acquire(blocking=False):
            self.throttles += 1
            raise throttled()
        try:
            container = self._container() if self._limited else self._first
            try:
                result = container.executor.submit(self._call, container, event, "sync").result()
            except Exception as exc:  # what Lambda reports for a handler that raised
                body = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}).encode()
                return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(body)}
            finally:
                if self._limited:
                    self._done(container)
        finally:
            if self._limited:
                self._slots.release()
        return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": io.BytesIO(json.dumps(result).encode())}

    def kill(self) -> None:
        """Stop every running invocation dead (a crash, or Lambda's timeout)."""
        with self._guard:
            for container in self._running:
                container.dead = True
                if container.loop is not None:
                    container.loop.call_soon_threadsafe(container.loop.stop)

    def drain(self, timeout_s: float = 10.0) -> None:
        """Return once every event accepted so far has run (or been dropped) and no invocation runs."""

        def idle() -> bool:
            with self._guard:
                return not (self._pending or self._running)

        until(idle, timeout_s=timeout_s, what="the stand-in running everything it accepted")
        self._first.executor.submit(lambda: None).result()  # what an unlimited stand-in queued there

    # -- containers ------------------------------------------------------------------------------------

    def _container(self) -> _Container:
        with self._guard:
            if self._idle:
                container = self._idle.pop()
            else:
                assert self._new_handler is not None, "a second container needs new_handler"
                container = _Container(self._new_handler())
            self._running.append(container)
            return container

    def _done(self, container: _Container) -> None:
        with self._guard:
            self._running.remove(container)
            (self._dead if container.dead else self._idle).append(container)

    def _call(self, container: _Container, event: dict[str, Any], kind: str) -> dict[str, Any]:
        attempt = Attempt(event.get("rawPath", ""), kind, time.monotonic())
        self.attempts.append(attempt)
        context = LambdaContext(function_name=self._function_name, timeout_s=self._timeout_s)
        try:
            return container.handler(event, context)
        except BaseException:
            attempt.outcome = "killed" if container.dead else "error"
            raise
        finally:
            attempt.ended = time.monotonic()

    # -- the asynchronous queue -------------------------------------------------------------------------

    def pending(self) -> int:
        """Asynchronous events Lambda still holds (to run, or to retry)."""
        return self._pending

    def _later(self, delay_s: float, event: dict[str, Any], accepted: float, throttled: int, errors: int) -> None:
        if self._closed:
            return
        with self._guard:
            self._pending += 1
        timer = threading.Timer(delay_s, self._attempt, (event, accepted, throttled, errors))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _attempt(self, event: dict[str, Any], accepted: float, throttled: int, errors: int) -> None:
        try:
            self._attempt_once(event, accepted, throttled, errors)
        finally:
            with self._guard:
                self._pending -= 1

    def _attempt_once(self, event: dict[str, Any], accepted: float, throttled: int, errors: int) -> None:
        if self._closed:
            return
        if time.monotonic() - accepted > self.max_event_age_s * self.time_scale:
            self.expired_events.append(event)
            return
        if not self._slots.acquire(blocking=False):
            self.throttles += 1
            delay = min(THROTTLE_MAX_RETRY_S, THROTTLE_FIRST_RETRY_S * 2**throttled)
            self._later(delay * self.time_scale, event, accepted, throttled + 1, errors)
            return
        try:
            container = self._container()
            try:
                container.executor.submit(self._call, container, event, "async").result()
            except Exception:
                if errors < min(self.retry_attempts, len(ERROR_RETRY_S)):
                    self._later(ERROR_RETRY_S[errors] * self.time_scale, event, accepted, throttled, errors + 1)
            finally:
                self._done(container)
        finally:
            self._slots.release()

    def close(self) -> None:
        """End the containers: what Lambda reclaims, the test must close (the app's clients, the loop)."""
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        with self._guard:
            containers, self._idle = self._idle, []
        for container in containers:
            container.executor.submit(_end_container, container.handler).result()
            container.executor.shutdown(wait=True)
        for container in self._dead:  # its loop stopped mid-invocation: nothing of it runs again
            container.executor.shutdown(wait=False)


def _end_container(handler: Handler) -> None:
    end_handler(handler)
    asyncio.get_event_loop().close()


def end_handler(handler: Handler) -> None:
    """Close what a Lambda handler's app holds, on the event loop Mangum ran it on (this thread's)."""
    app = getattr(handler, "app", None)
    if isinstance(app, Starlette):
        asyncio.get_event_loop().run_until_complete(_shut_down(app))


async def _shut_down(app: Starlette) -> None:
    # The handler runs with lifespan off; entering and leaving the lifespan runs only its shutdown
    # half here, since the apps' startup half is empty (their clients are built in create_app).
    async with app.router.lifespan_context(app):
        pass

"""Running asynchronous jobs: batch tickets in the same queue as synchronous requests, at most once each.

A job's ticket has no holder: whichever runner process holds the slot when it reaches the head
claims it and runs it here (:meth:`JobRunner.run_claimed`), so a job queued by a runner that
died is run by another. Delivery is at least once (Lambda's async queue, a retried HTTP call); the store's conditional
``queued → running`` makes the execution at most once. While generating, the partial response
and a lease are written every ``JOB_PROGRESS_INTERVAL_S``; a job whose runner dies stops
renewing its lease and is failed (``runner_lost``) by the next reader. A cancel is seen at the
next progress write and closes the Ollama request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
from servicekit.callers import Caller
from servicekit.errors import Busy, ServiceError, UpstreamError, error_envelope
from servicekit.jobs.model import Job
from servicekit.jobs.store import JobStore
from servicekit.observe.middleware import Observer, report
from servicekit.observe.record import RequestRecord

from runner.budget import Budget
from runner.ollama import OllamaClient
from runner.settings import Settings
from runner.slot import GenerationSlot, Grant
from runner.wire import OllamaChunk, chunk_text, ollama_request, timings_of, usage_of

logger = logging.getLogger("runner.jobs")
# The cleanup writes of a job that is being torn down must still reach the store.
CLEANUP_TIMEOUT_S = 5.0
# The route a job's run is reported under (logs, the requests counter): bounded, like a route template.
JOB_ROUTE = "job"


def sole_service_error(group: BaseExceptionGroup[BaseException]) -> ServiceError | None:
    """The one :class:`ServiceError` inside a task group's error; None when it holds anything else."""
    leaves = list(_leaves(group))
    return leaves[0] if len(leaves) == 1 and isinstance(leaves[0], ServiceError) else None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _error(exc: ServiceError, job_id: str) -> dict[str, Any]:
    return dict(error_envelope(exc, job_id)["error"])


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        slot: GenerationSlot,
        ollama: OllamaClient,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.settings = settings
        self.store = store
        self.slot = slot
        self.ollama = ollama
        # A job's run is reported like a request (one log line, its generation in the metrics):
        # it runs outside any request that the middleware would see.
        self.observers = observers
        self._background: set[asyncio.Task[str | None]] = set()

    def run_claimed(self, grant: Grant) -> None:
        """Run the job whose ticket this process just claimed (it holds the slot); release it after."""
        task = asyncio.get_running_loop().create_task(self._run_claimed(grant))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_claimed(self, grant: Grant) -> None:
        try:
            await self.run_ticket(grant, Budget(None))
        finally:
            with anyio.CancelScope(shield=True):
                await self.slot.release(grant)

    async def run_ticket(self, grant: Grant, budget: Budget) -> str | None:
        """Run the job of a claimed ticket (the slot is held); its final status, None when it did not
        start (cancelled or expired meanwhile, or run by another delivery). Never raises a ServiceError."""
        job_id = grant.ticket["job_id"]
        try:
            assert job_id is not None
            job = await self.store.start(job_id, now=time.time(), lease_s=self.settings.job_lease_s)
            if job is not None:
                return await self._run_started(job, await self.slot.ready(grant), budget)
        except ServiceError as exc:
            logger.warning("job %s: %s", job_id, exc.message)
        return None

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def execute(self, job: Job, caller: Caller, *, wait_s: float, budget: Budget | None = None) -> str | None:
        """Queue the job and wait for it here (at most ``wait_s``; on Lambda the invocation is the
        worker), then run it if it is still queued; its final status.

        A ``budget`` (on Lambda, the invocation's time left) bounds the generation: past it the
        job fails with ``deadline_exceeded``, keeping its partial response.
        """
        job_id = job["id"]
        try:
            async with self.slot.place(caller, "batch", job["model"]) as place:
                grant = await self.slot.wait(place, max(0.0, wait_s))
                started = await self.store.start(job_id, now=time.time(), lease_s=self.settings.job_lease_s)
                if started is None:  # cancelled, expired or already run by another delivery
                    return None
                return await self._run_started(started, grant, budget or Budget(None))
        except Busy:
            await self.store.settle(
                job_id,
                now=time.time(),
                status="expired",
                error={"code": "job_expired", "message": "The job did not get the model before its start deadline."},
            )
            return "expired"

    async def _run_started(self, job: Job, grant: Grant, budget: Budget) -> str:
        record = RequestRecord(
            service="runner",
            method="JOB",
            path=f"/v1/jobs/{job['id']}",
            request_id=job["id"],
            route=JOB_ROUTE,
            caller=job["owner"],
            caller_keyed=job.get("owner_keyed", False),
            model=job["model"],
        )
        started = time.perf_counter()
        try:
            return await self._generate(job, grant, budget, record)
        except asyncio.CancelledError:
            record.status, record.error_code = 503, "runner_stopped"
            with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                await self.store.finish(
                    job["id"],
                    "failed",
                    now=time.time(),
                    fields={"error": {"code": "runner_stopped", "message": "The runner stopped during the job."}},
                )
            raise
        finally:
            record.duration_ms = round((time.perf_counter() - started) * 1000, 3)
            report(self.observers, record)

    async def _generate(self, job: Job, grant: Grant, budget: Budget, record: RequestRecord) -> str:
        job_id = job["id"]
        prepared = self.ollama.prepare(*ollama_request(job["model"], job["request"]))  # type: ignore[arg-type]
        pieces: list[str] = []
        cancelled = False

        async def report_progress(scope: anyio.CancelScope) -> None:
            nonlocal cancelled
            while True:
                await anyio.sleep(self.settings.job_progress_interval_s)
                alive = await self.store.heartbeat(
                    job_id, response="".join(pieces), now=time.time(), lease_s=self.settings.job_lease_s
                )
                if not alive:  # cancelled (or settled) meanwhile: stop generating at once
                    cancelled = True
                    scope.cancel()
                    return

        async def generate_reporting_progress() -> OllamaChunk | None:
            """Ollama's final chunk; None when the stream ended early or the job was cancelled."""
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(report_progress, group.cancel_scope)
                    async with self.ollama.stream(prepared) as chunks:
                        async for chunk in chunks:
                            if chunk.get("done"):
                                group.cancel_scope.cancel()
                                return chunk
                            pieces.append(chunk_text(chunk))
                    group.cancel_scope.cancel()
            except BaseExceptionGroup as group_error:
                # anyio wraps even a single error in a group: surface the generation's own
                # error, so the job settles as failed with its code instead of being lost.
                if (sole := sole_service_error(group_error)) is None:
                    raise
                raise sole from None
            return None

        try:
            # The budget wraps the task group, so its end cancels generation and progress alike.
            final = await budget.run(generate_reporting_progress())
            if cancelled:
                record.status, record.error_code = 499, "cancelled"
                return "cancelled"
            if final is None:
                raise UpstreamError("Ollama ended the stream before the generation was done.")
            grant.ended_cleanly = True
        except ServiceError as exc:
            record.status, record.error_code = exc.status, exc.code
            fields = {"response": "".join(pieces), "error": _error(exc, job_id)}
            await self.store.finish(job_id, "failed", now=time.time(), fields=fields)
            return "failed"
        fields = {
            "response": "".join(pieces),
            "usage": dict(usage_of(final)),
            "timings": dict(timings_of(final, grant.queue_ms)),
        }
        await self.store.finish(job_id, "succeeded", now=time.time(), fields=fields)
        record.status = 200
        record.note_generation(job["model"], final, grant.queue_ms)
        return "succeeded"

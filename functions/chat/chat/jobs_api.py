"""The jobs API: ``POST``/``GET /v1/jobs``, ``GET``/``DELETE /v1/jobs/{id}``.

A job is stored first, then handed to the runner over HTTP (locally: the runner queues it). On
AWS chat queues its ticket in the table itself and kicks the runner (an asynchronous
``lambda:Invoke``) only when no invocation is draining jobs (:mod:`chat.lambda_queue`). If the
queue refuses it (full), the job is deleted again and the refusal is the answer.

Jobs belong to the caller that created them: another caller is told ``404 job_not_found``, as
if the job did not exist, and Idempotency-Keys are the caller's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from servicekit.body import read_json_object
from servicekit.callers import Caller, caller_of
from servicekit.errors import InvalidRequest, JobFinished, JobNotFound, ServiceError
from servicekit.generation import GenerationRequest, parse_generation_request
from servicekit.jobs.model import FINISHED, Job, is_job_id, iso, new_job, view
from servicekit.jobs.store import JobStore
from servicekit.queue.model import job_ticket_id
from servicekit.queue.store import QueueStore
from servicekit.requestid import request_id_of
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chat.lambda_queue import LambdaQueue
from chat.runner_client import RunnerClient
from chat.settings import Settings

IDEMPOTENCY_HEADER = "idempotency-key"
DEFAULT_PAGE = 20
MAX_PAGE = 100


def _page_size(request: Request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_PAGE}.")
    return int(raw)


class JobsEndpoints:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        runner: RunnerClient,
        choose_model: Callable[[dict[str, Any], Caller], str],
        *,
        queue: QueueStore | None = None,
        lambda_queue: LambdaQueue | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.lambda_queue = lambda_queue
        self.runner = runner
        self.choose_model = choose_model

    async def jobs(self, request: Request) -> Response:
        """``POST`` (create) or ``GET`` (list) ``/v1/jobs`` (one route, so a 405 lists both methods)."""
        return await (self.create(request) if request.method == "POST" else self.index(request))

    async def job(self, request: Request) -> Response:
        """``GET`` or ``DELETE /v1/jobs/{id}`` (one route, so a 405 lists both methods)."""
        return await (self.cancel(request) if request.method == "DELETE" else self.get(request))

    async def create(self, request: Request) -> Response:
        caller = caller_of(request.scope)
        data = await read_json_object(request, self.settings)
        generation: GenerationRequest = parse_generation_request(
            data, max_prompt_chars=self.settings.max_prompt_chars, allow_stream=False, also_allowed=("model",)
        )
        model = self.choose_model(data, caller)
        key = request.headers.get(IDEMPOTENCY_HEADER) or None
        now = time.time()
        job, created = await self.store.create(
            new_job(
                model,
                dict(generation),
                owner=caller.name,
                now=now,
                ttl_s=self.settings.job_ttl_s,
                start_deadline_s=self.settings.job_start_deadline_s,
                owner_keyed=caller.keyed,
            ),
            idempotency_key=key,
        )
        if created:
            try:
                await self._start(job["id"], model, request_id_of(request.scope), caller)
            except ServiceError:
                await self.store.delete(job["id"])
                raise
        body = {"id": job["id"], "status": job["status"], "created_at": view(job)["created_at"]}
        headers = {"Location": f"/v1/jobs/{job['id']}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(body, status_code=202, headers=headers)

    async def _start(self, job_id: str, model: str, request_id: str, caller: Caller) -> None:
        if self.lambda_queue is None:
            await self.runner.start_job(job_id, request_id, caller)
            return
        await self.lambda_queue.enqueue_job(job_id, caller, model)
        try:
            # Written before the lease is read: a drain that ends now still sees the ticket.
            if not await self.lambda_queue.draining():
                await self.runner.start_job(job_id, request_id, caller)
        except ServiceError:
            await self.lambda_queue.leave_job(job_id)
            raise

    async def index(self, request: Request) -> Response:
        """The caller's jobs, newest first: ``?limit=`` (1-100, default 20) and ``?after=<id>`` to page on."""
        limit = _page_size(request)
        after = request.query_params.get("after")
        if after is not None and not is_job_id(after):
            raise InvalidRequest("'after' must be a job id from the previous page.")
        owner = caller_of(request.scope).name
        found = await self.store.list_jobs(owner, limit=limit + 1, after=after, now=time.time())
        page = found[:limit]
        body: dict[str, Any] = {
            "jobs": [{"id": j["id"], "status": j["status"], "created_at": iso(j["created_at"])} for j in page],
            "next_after": page[-1]["id"] if len(found) > limit else None,
        }
        return JSONResponse(body)

    async def _own(self, request: Request, now: float) -> Job:
        """The caller's job named in the path; anyone else's is as unknown as a job that never was."""
        job_id = request.path_params["job_id"]
        job = await self.store.get(job_id, now=now) if is_job_id(job_id) else None
        if job is None or job["owner"] != caller_of(request.scope).name:
            raise JobNotFound(f"There is no job {job_id!r} (jobs are kept {self.settings.job_ttl_s / 3600:g} h).")
        return job

    async def get(self, request: Request) -> Response:
        now = time.time()
        job = view(await self._own(request, now))
        if job["status"] == "queued" and self.queue is not None:
            # Exact: where its ticket stands in the host's queue now.
            standing = await self.queue.job_standing(job["id"], now=now)
            job["queue_position"] = standing.position if standing is not None else job["queue_position"]
        return JSONResponse(job)

    async def cancel(self, request: Request) -> Response:
        now = time.time()
        job = await self._own(request, now)
        job_id = job["id"]
        if job["status"] in FINISHED:
            raise JobFinished(f"Job {job_id} has already finished ({job['status']}).")
        after = await self.store.cancel(job_id, now=now)
        if after is None or after["status"] != "cancelled":  # it finished in the meantime
            raise JobFinished(f"Job {job_id} has already finished.")
        if self.queue is not None and job["status"] == "queued":  # out of the queue now (a runner would skip it)
            await self.queue.leave(job_ticket_id(job_id))
        return JSONResponse(view(after))

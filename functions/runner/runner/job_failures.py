"""``runner.job_failures.handler``: the on-failure destination of the runner's asynchronous invokes (AWS).

Lambda calls it with a destination record when a job's kick could not be run: it waited in
the async queue past ``MaximumEventAgeInSeconds`` (= the job's start deadline) → the job expires
if it is still queued past that deadline (a drain started by another kick may be running it);
or the invocation failed (crashed, timed out) three times → ``failed``. Either way no job is
left ``queued`` or ``running`` forever. Jobs that already finished are left as they are.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any, Literal

from servicekit.jobs.store import JobStore
from servicekit.state.factory import StateSettings, job_store

RUN_PATH = re.compile(r"^/v1/jobs/([0-9a-f]{32})/run$")


def job_id_of(record: dict[str, Any]) -> str | None:
    payload = record.get("requestPayload") or {}
    match = RUN_PATH.match(str(payload.get("rawPath", "")))
    return match[1] if match else None


async def settle_failed_delivery(store: JobStore, record: dict[str, Any], *, now: float) -> dict[str, Any]:
    job_id = job_id_of(record)
    if job_id is None:
        return {"settled": False, "reason": "not a job event"}
    condition = str(record.get("requestContext", {}).get("condition", ""))
    status: Literal["failed", "expired"]
    if condition == "EventAgeExceeded":
        # The job's own start deadline says whether it expired (a reader applies it): a job
        # another kick's drain is running, or has run, is left alone.
        job = await store.get(job_id, now=now)
        expired = job is not None and job["status"] == "expired"
        return {"settled": expired, "job_id": job_id, "status": job["status"] if job is not None else "gone"}
    error_type = record.get("responsePayload", {}) or {}
    kind = error_type.get("errorType", condition) if isinstance(error_type, dict) else condition
    status, error = "failed", {"code": "runner_failed", "message": f"The runner failed to run the job ({kind})."}
    settled = await store.settle(job_id, now=now, status=status, error=error)
    return {"settled": settled, "job_id": job_id, "status": status}


def handler(record: dict[str, Any], context: Any) -> dict[str, Any]:
    # Failed deliveries are rare: a table client per invocation costs less than keeping state.
    store = job_store(StateSettings(table=os.environ["JOBS_TABLE"]))
    return asyncio.run(settle_failed_delivery(store, record, now=time.time()))

"""The job document, its statuses, and the rules both stores apply."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "expired"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "expired"})
CANCELLABLE: frozenset[str] = frozenset({"queued", "running"})


class Job(TypedDict):
    id: str
    owner: str  # the caller's name: only they see the job; their idempotency keys are theirs alone
    status: JobStatus
    model: str
    request: dict[str, Any]  # the validated generation request, without "stream"
    request_hash: str
    created_at: float  # epoch seconds
    start_deadline: float  # a job not started by then expires
    expires_at: float  # deleted after this (the TTL)
    started_at: float | None
    finished_at: float | None
    lease_until: float | None  # a running job's runner must heartbeat before this
    queue_position: int | None
    response: str
    usage: dict[str, Any] | None
    timings: dict[str, Any] | None
    error: dict[str, Any] | None
    idempotency_key: NotRequired[str]
    owner_keyed: NotRequired[bool]  # the owner was named by an API key (metrics label only those)


class JobView(TypedDict):
    """What ``GET /v1/jobs/{id}`` shows."""

    id: str
    status: JobStatus
    model: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    response: str
    usage: dict[str, Any] | None
    timings: dict[str, Any] | None
    error: dict[str, Any] | None
    queue_position: int | None


JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def is_job_id(value: str) -> bool:
    """Job ids are 32 lowercase hex digits; anything else names no job (and never reaches a store)."""
    return bool(JOB_ID.match(value))


def request_hash(model: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"model": model, "request": request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def is_owner(value: str) -> bool:
    """A caller's name or address: non-empty (a DynamoDB index key), never starting with ``#`` (reserved)."""
    return bool(value) and not value.startswith("#") and len(value) <= 256


def new_job(
    model: str,
    request: dict[str, Any],
    *,
    owner: str,
    now: float,
    ttl_s: float,
    start_deadline_s: float,
    owner_keyed: bool = False,
) -> Job:
    if not is_owner(owner):
        raise ValueError(f"not a job owner: {owner!r}")
    return {
        "id": uuid.uuid4().hex,
        "owner": owner,
        "status": "queued",
        "model": model,
        "request": request,
        "request_hash": request_hash(model, request),
        "created_at": now,
        "start_deadline": now + start_deadline_s,
        "expires_at": now + ttl_s,
        "started_at": None,
        "finished_at": None,
        "lease_until": None,
        "queue_position": None,
        "response": "",
        "usage": None,
        "timings": None,
        "error": None,
        "owner_keyed": owner_keyed,
    }


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def view(job: Job) -> JobView:
    return {
        "id": job["id"],
        "status": job["status"],
        "model": job["model"],
        "created_at": iso(job["created_at"]) or "",
        "started_at": iso(job["started_at"]),
        "finished_at": iso(job["finished_at"]),
        "response": job["response"],
        "usage": job["usage"],
        "timings": job["timings"],
        "error": job["error"],
        "queue_position": job["queue_position"] if job["status"] == "queued" else None,
    }


def overdue(job: Job, now: float) -> tuple[JobStatus, dict[str, Any]] | None:
    """The status a job must move to because time ran out, if any (applied by the stores)."""
    if job["status"] == "queued" and now > job["start_deadline"]:
        return "expired", {"code": "job_expired", "message": "The job did not start before its start deadline."}
    if job["status"] == "running" and job["lease_until"] is not None and now > job["lease_until"]:
        return "failed", {"code": "runner_lost", "message": "The runner stopped reporting progress on this job."}
    return None

"""What a job store does. Every transition is conditional on the job's current status."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from servicekit.jobs.model import Job

Outcome = Literal["succeeded", "failed"]


class JobStore(Protocol):
    async def create(self, job: Job, idempotency_key: str | None = None) -> tuple[Job, bool]:
        """Store a new job; with a key seen before (and not expired), return that job instead.

        Returns the job and whether it was created. Raises ``IdempotencyConflict`` when the
        key was used for a different request.
        """
        ...

    async def get(self, job_id: str, *, now: float) -> Job | None:
        """The job (past-deadline or lost jobs already settled), or None when unknown or past its TTL."""
        ...

    async def set_queue_position(self, job_id: str, position: int) -> None: ...

    async def start(self, job_id: str, *, now: float, lease_s: float) -> Job | None:
        """queued → running, only if still queued and before its start deadline; None otherwise."""
        ...

    async def heartbeat(self, job_id: str, *, response: str, now: float, lease_s: float) -> bool:
        """Save partial output and extend the lease; False when the job is no longer running."""
        ...

    async def finish(self, job_id: str, outcome: Outcome, *, now: float, fields: dict[str, Any]) -> bool:
        """running → succeeded/failed with the final fields; False when it was no longer running."""
        ...

    async def cancel(self, job_id: str, *, now: float) -> Job | None:
        """queued/running → cancelled. Returns the job as it now is (unchanged if it had finished)."""
        ...

    async def settle(
        self, job_id: str, *, now: float, status: Literal["failed", "expired"], error: dict[str, Any]
    ) -> bool:
        """queued/running → failed/expired (a delivery that never ran, or died); False if already finished."""
        ...

    async def delete(self, job_id: str) -> None:
        """Remove the job (and its idempotency record): a job the runner refused was never accepted."""
        ...

    async def list_jobs(self, owner: str, *, limit: int, after: str | None = None, now: float) -> list[Job]:
        """``owner``'s jobs, newest first, at most ``limit`` (past-TTL jobs left out).

        ``after`` is the id of the last job of the previous page (cursor pagination); an id
        that is not one of ``owner``'s current jobs gives an empty page.
        """
        ...

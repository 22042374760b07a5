"""Jobs as JSON files in a directory shared by chat and runner processes (local mode and compose).

Each write goes to a temporary file that is then renamed over the job's file (atomic), and
every read-modify-write happens under that job's own ``filelock``, so concurrent processes
never lose a transition.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Literal, cast

from servicekit.errors import IdempotencyConflict
from servicekit.jobs.model import CANCELLABLE, Job, overdue
from servicekit.jobs.store import Outcome

LOCK_TIMEOUT_S = 10.0
LOCK_POLL_S = 0.002
SWEEP_EVERY_S = 60.0


class FileJobStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._last_sweep = 0.0

    # -- files ---------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if not name.replace("-", "").isalnum():
            raise ValueError(f"not a job id: {name!r}")
        return self.directory / f"{name}.json"

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[None]:
        from filelock import AsyncFileLock  # on first use: ~50 ms of a cold start otherwise

        # One lock object per acquisition: a shared AsyncFileLock would be re-entrant.
        lock = AsyncFileLock(
            str(self.directory / f"{name}.lock"), timeout=LOCK_TIMEOUT_S, poll_interval=LOCK_POLL_S,
            run_in_executor=False,
        )  # fmt: skip
        async with lock:
            yield

    async def _read(self, name: str) -> dict[str, Any] | None:
        import aiofiles  # on first use, like the lock: only processes that touch jobs pay for it

        try:
            async with aiofiles.open(self._path(name)) as file:
                data: dict[str, Any] = json.loads(await file.read())
                return data
        except FileNotFoundError:
            return None

    async def _write(self, name: str, data: dict[str, Any]) -> None:
        import aiofiles
        import aiofiles.os

        target = self._path(name)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        async with aiofiles.open(temporary, "w") as file:
            await file.write(json.dumps(data))
        await aiofiles.os.replace(temporary, target)

    async def _remove(self, name: str) -> None:
        import aiofiles.os

        for path in (self._path(name), self.directory / f"{name}.lock"):
            with suppress(FileNotFoundError):
                await aiofiles.os.remove(path)

    async def _update(self, job_id: str, change: Callable[[Job], bool]) -> tuple[Job | None, bool]:
        """Apply ``change`` under the job's lock; it returns whether it changed the job."""
        async with self._locked(job_id):
            job = cast(Job | None, await self._read(job_id))
            if job is None:
                return None, False
            changed = change(job)
            if changed:
                await self._write(job_id, dict(job))
            return job, changed

    # -- the store -----------------------------------------------------------------------------

    @staticmethod
    def _idempotency_name(key: str) -> str:
        return "idem-" + hashlib.sha256(key.encode()).hexdigest()

    async def create(self, job: Job, idempotency_key: str | None = None) -> tuple[Job, bool]:
        await self._sweep(job["created_at"])
        if idempotency_key is None:
            await self._write(job["id"], dict(job))
            return job, True
        name = self._idempotency_name(idempotency_key)
        async with self._locked(name):
            record = await self._read(name)
            if record is not None and record["expires_at"] > job["created_at"]:
                if record["request_hash"] != job["request_hash"]:
                    raise IdempotencyConflict("This Idempotency-Key was used with a different request.")
                existing = await self.get(record["job_id"], now=job["created_at"])
                if existing is not None:
                    return existing, False
            stored = cast(Job, {**job, "idempotency_key": idempotency_key})
            await self._write(job["id"], dict(stored))
            await self._write(name, {"job_id": job["id"], "request_hash": job["request_hash"],
                                     "expires_at": job["expires_at"]})  # fmt: skip
            return stored, True

    async def get(self, job_id: str, *, now: float) -> Job | None:
        job = cast(Job | None, await self._read(job_id))
        if job is None:
            return None
        if now > job["expires_at"]:
            await self._remove(job_id)
            return None
        if (due := overdue(job, now)) is not None:
            status, error = due
            await self.settle(job_id, now=now, status=cast(Literal["failed", "expired"], status), error=error)
            return cast(Job | None, await self._read(job_id))
        return job

    async def set_queue_position(self, job_id: str, position: int) -> None:
        def change(job: Job) -> bool:
            if job["status"] != "queued":
                return False
            job["queue_position"] = position
            return True

        await self._update(job_id, change)

    async def start(self, job_id: str, *, now: float, lease_s: float) -> Job | None:
        def change(job: Job) -> bool:
            if job["status"] != "queued" or now > job["start_deadline"]:
                return False
            job.update({"status": "running", "started_at": now, "lease_until": now + lease_s, "queue_position": None})
            return True

        job, changed = await self._update(job_id, change)
        return job if changed else None

    async def heartbeat(self, job_id: str, *, response: str, now: float, lease_s: float) -> bool:
        def change(job: Job) -> bool:
            if job["status"] != "running":
                return False
            job.update({"response": response, "lease_until": now + lease_s})
            return True

        return (await self._update(job_id, change))[1]

    async def finish(self, job_id: str, outcome: Outcome, *, now: float, fields: dict[str, Any]) -> bool:
        def change(job: Job) -> bool:
            if job["status"] != "running":
                return False
            job.update(fields)  # type: ignore[typeddict-item]
            job.update({"status": outcome, "finished_at": now, "lease_until": None})
            return True

        return (await self._update(job_id, change))[1]

    async def cancel(self, job_id: str, *, now: float) -> Job | None:
        def change(job: Job) -> bool:
            if job["status"] not in CANCELLABLE:
                return False
            job.update({"status": "cancelled", "finished_at": now, "lease_until": None, "queue_position": None})
            return True

        return (await self._update(job_id, change))[0]

    async def settle(
        self, job_id: str, *, now: float, status: Literal["failed", "expired"], error: dict[str, Any]
    ) -> bool:
        def change(job: Job) -> bool:
            if job["status"] not in CANCELLABLE:
                return False
            job.update(
                {"status": status, "finished_at": now, "lease_until": None, "queue_position": None, "error": error}
            )
            return True

        return (await self._update(job_id, change))[1]

    async def delete(self, job_id: str) -> None:
        await self._remove(job_id)

    async def _sweep(self, now: float) -> None:
        """Delete jobs past their TTL, at most once a minute (reads also ignore them)."""
        if now - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = now
        for path in self.directory.glob("*.json"):
            try:
                if json.loads(path.read_text()).get("expires_at", now + 1) < now:
                    await self._remove(path.stem)
            except (OSError, ValueError):
                continue

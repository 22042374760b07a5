"""Jobs in the DynamoDB table (AWS): one item per job, transitions as conditional writes.

Idempotency records are items of their own (``idem#<sha256 of owner and key>``); a caller's
jobs are listed through the ``by_owner`` index (see :mod:`servicekit.state.dynamo`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import suppress
from decimal import Decimal
from typing import Any, Literal, cast

from servicekit.errors import IdempotencyConflict
from servicekit.jobs.model import Job, overdue
from servicekit.jobs.store import Outcome
from servicekit.state.dynamo import ConditionFailed, DynamoTable, from_item, to_item


def _job(item: dict[str, Any]) -> Job:
    data = from_item(item)
    for optional in ("started_at", "finished_at", "lease_until", "queue_position", "usage", "timings", "error"):
        data.setdefault(optional, None)
    data.setdefault("response", "")
    return cast(Job, data)


def _idempotency_id(owner: str, key: str) -> str:
    return "idem#" + hashlib.sha256(json.dumps([owner, key]).encode()).hexdigest()


class DynamoJobStore:
    def __init__(self, table: Any = None, *, connect: Callable[[], Any] | None = None) -> None:
        """``table`` is a boto3 DynamoDB Table resource, or ``connect`` makes one on first use."""
        self._db = DynamoTable(table, connect=connect)

    async def _conditional_update(
        self, job_id: str, update: str, condition: str, values: dict[str, Any], names: dict[str, str] | None = None
    ) -> bool:
        # Attribute names go through placeholders: "status" (and others) are DynamoDB reserved words.
        try:
            await self._db.call(
                lambda: self._db.table.update_item(
                    Key={"id": job_id},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#status": "status", **(names or {})},
                    ExpressionAttributeValues=to_item(values),
                )
            )
        except ConditionFailed:
            return False
        return True

    async def create(self, job: Job, idempotency_key: str | None = None) -> tuple[Job, bool]:
        if idempotency_key is not None:
            key = _idempotency_id(job["owner"], idempotency_key)
            record = {
                "id": key,
                "job_id": job["id"],
                "request_hash": job["request_hash"],
                "expires_at": job["expires_at"],
            }
            try:
                await self._db.call(
                    lambda: self._db.table.put_item(
                        Item=to_item(record),
                        ConditionExpression="attribute_not_exists(id) OR expires_at < :now",
                        ExpressionAttributeValues={":now": Decimal(str(job["created_at"]))},
                    )
                )
            except ConditionFailed:
                existing = await self._db.read(key)
                if existing is not None:
                    if existing["request_hash"] != job["request_hash"]:
                        raise IdempotencyConflict("This Idempotency-Key was used with a different request.") from None
                    found = await self.get(str(existing["job_id"]), now=job["created_at"])
                    if found is not None:
                        return found, False
            job = cast(Job, {**job, "idempotency_key": idempotency_key})
        await self._db.call(
            lambda: self._db.table.put_item(Item=to_item(dict(job)), ConditionExpression="attribute_not_exists(id)")
        )
        return job, True

    async def get(self, job_id: str, *, now: float) -> Job | None:
        item = await self._db.read(job_id)
        if item is None or float(item["expires_at"]) < now:
            return None
        job = _job(item)
        if (due := overdue(job, now)) is not None:
            status, error = due
            await self.settle(job_id, now=now, status=cast(Literal["failed", "expired"], status), error=error)
            again = await self._db.read(job_id)
            return _job(again) if again is not None else None
        return job

    async def set_queue_position(self, job_id: str, position: int) -> None:
        await self._conditional_update(
            job_id, "SET queue_position = :p", "#status = :queued", {":p": position, ":queued": "queued"}
        )

    async def start(self, job_id: str, *, now: float, lease_s: float) -> Job | None:
        started = await self._conditional_update(
            job_id,
            "SET #status = :running, started_at = :now, lease_until = :lease REMOVE queue_position",
            "#status = :queued AND start_deadline >= :now",
            {":running": "running", ":queued": "queued", ":now": now, ":lease": now + lease_s},
        )
        if not started:
            return None
        item = await self._db.read(job_id)
        return _job(item) if item is not None else None

    async def heartbeat(self, job_id: str, *, response: str, now: float, lease_s: float) -> bool:
        return await self._conditional_update(
            job_id,
            "SET #response = :response, lease_until = :lease",
            "#status = :running",
            {":response": response, ":lease": now + lease_s, ":running": "running"},
            {"#response": "response"},
        )

    async def finish(self, job_id: str, outcome: Outcome, *, now: float, fields: dict[str, Any]) -> bool:
        names = sorted(k for k in fields if fields[k] is not None)
        assignments = ", ".join(f"#{name} = :{name}" for name in names)
        return await self._conditional_update(
            job_id,
            f"SET #status = :outcome, finished_at = :now, {assignments} REMOVE lease_until",
            "#status = :running",
            {":outcome": outcome, ":now": now, ":running": "running", **{f":{k}": fields[k] for k in names}},
            {f"#{name}": name for name in names},
        )

    async def cancel(self, job_id: str, *, now: float) -> Job | None:
        await self._conditional_update(
            job_id,
            "SET #status = :cancelled, finished_at = :now REMOVE lease_until, queue_position",
            "#status IN (:queued, :running)",
            {":cancelled": "cancelled", ":now": now, ":queued": "queued", ":running": "running"},
        )
        return await self.get(job_id, now=now)

    async def settle(
        self, job_id: str, *, now: float, status: Literal["failed", "expired"], error: dict[str, Any]
    ) -> bool:
        return await self._conditional_update(
            job_id,
            "SET #status = :status, finished_at = :now, #error = :error REMOVE lease_until, queue_position",
            "#status IN (:queued, :running)",
            {":status": status, ":now": now, ":error": error, ":queued": "queued", ":running": "running"},
            {"#error": "error"},
        )

    async def delete(self, job_id: str) -> None:
        response = await self._db.call(lambda: self._db.table.delete_item(Key={"id": job_id}, ReturnValues="ALL_OLD"))
        old = response.get("Attributes") or {}
        if "idempotency_key" in old:
            key = _idempotency_id(str(old["owner"]), str(old["idempotency_key"]))
            with suppress(ConditionFailed):  # the key has moved on to a newer job: leave that one
                await self._db.call(
                    lambda: self._db.table.delete_item(
                        Key={"id": key}, ConditionExpression="job_id = :job", ExpressionAttributeValues={":job": job_id}
                    )
                )

    async def list_jobs(self, owner: str, *, limit: int, after: str | None = None, now: float) -> list[Job]:
        start: dict[str, Any] | None = None
        if after is not None:
            cursor = await self._db.read(after)
            if cursor is None or cursor.get("owner") != owner:
                return []
            start = {"id": after, "owner": owner, "created_at": cursor["created_at"]}
        jobs: list[Job] = []
        while len(jobs) < limit:
            items, start = await self._db.query_owner(owner, newest_first=True, start=start, page=limit)
            for item in items:
                if float(item["expires_at"]) >= now and len(jobs) < limit:
                    job = _job(item)
                    settled = await self.get(job["id"], now=now) if overdue(job, now) else job
                    if settled is not None:
                        jobs.append(settled)
            if start is None:
                break
        return jobs

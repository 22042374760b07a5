"""Jobs in a DynamoDB table (AWS): one item per job, transitions as conditional writes.

The table has a string key ``id`` and DynamoDB TTL on ``expires_at`` (epoch seconds); TTL
deletion can lag, so reads ignore expired items themselves. Idempotency keys are items of
their own (``idem#<sha256>``) in the same table. boto3 is blocking: every call runs in a worker
thread. botocore's errors are translated here, once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal, TypeVar, cast

import anyio

from servicekit.errors import IdempotencyConflict, UpstreamError
from servicekit.jobs.model import Job, overdue
from servicekit.jobs.store import Outcome

T = TypeVar("T")
CONDITION_FAILED = "ConditionalCheckFailedException"


class _ConditionFailed(Exception):
    """A conditional write found the item in another state (DynamoDB's ConditionalCheckFailed)."""


def _to_item(data: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB numbers are Decimals; None attributes are simply left out."""
    item: dict[str, Any] = json.loads(json.dumps(data), parse_float=Decimal)
    return {k: v for k, v in item.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return cast(dict[str, Any], plain(item))


def _job(item: dict[str, Any]) -> Job:
    data = _from_item(item)
    for optional in ("started_at", "finished_at", "lease_until", "queue_position", "usage", "timings", "error"):
        data.setdefault(optional, None)
    data.setdefault("response", "")
    return cast(Job, data)


class DynamoJobStore:
    def __init__(self, table: Any = None, *, connect: Callable[[], Any] | None = None) -> None:
        """``table`` is a boto3 DynamoDB Table resource, or ``connect`` makes one on first use
        (boto3 is a slow import; a runner that only serves /v1/run never pays for it)."""
        if (table is None) == (connect is None):
            raise ValueError("give either a table or a way to connect to one")
        self._given = table
        self._connect = connect

    @property
    def _table(self) -> Any:
        if self._given is None and self._connect is not None:
            self._given = self._connect()
        return self._given

    async def _call(self, operation: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError  # with boto3: on first use

        try:
            return await anyio.to_thread.run_sync(operation)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == CONDITION_FAILED:
                raise _ConditionFailed from exc
            raise UpstreamError(f"The jobs table failed: {code}.") from exc
        except BotoCoreError as exc:
            raise UpstreamError(f"The jobs table cannot be reached: {type(exc).__name__}.") from exc

    async def _conditional_update(
        self, job_id: str, update: str, condition: str, values: dict[str, Any], names: dict[str, str] | None = None
    ) -> bool:
        # Attribute names go through placeholders: "status" (and others) are DynamoDB reserved words.
        try:
            await self._call(
                lambda: self._table.update_item(
                    Key={"id": job_id},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#status": "status", **(names or {})},
                    ExpressionAttributeValues=_to_item(values),
                )
            )
        except _ConditionFailed:
            return False
        return True

    async def _read(self, key: str) -> dict[str, Any] | None:
        response = await self._call(lambda: self._table.get_item(Key={"id": key}, ConsistentRead=True))
        item: dict[str, Any] | None = response.get("Item")
        return item

    async def create(self, job: Job, idempotency_key: str | None = None) -> tuple[Job, bool]:
        if idempotency_key is not None:
            key = "idem#" + hashlib.sha256(idempotency_key.encode()).hexdigest()
            record = {
                "id": key,
                "job_id": job["id"],
                "request_hash": job["request_hash"],
                "expires_at": job["expires_at"],
            }
            try:
                await self._call(
                    lambda: self._table.put_item(
                        Item=_to_item(record),
                        ConditionExpression="attribute_not_exists(id) OR expires_at < :now",
                        ExpressionAttributeValues={":now": Decimal(str(job["created_at"]))},
                    )
                )
            except _ConditionFailed:
                existing = await self._read(key)
                if existing is not None:
                    if existing["request_hash"] != job["request_hash"]:
                        raise IdempotencyConflict("This Idempotency-Key was used with a different request.") from None
                    found = await self.get(str(existing["job_id"]), now=job["created_at"])
                    if found is not None:
                        return found, False
            job = cast(Job, {**job, "idempotency_key": idempotency_key})
        await self._call(
            lambda: self._table.put_item(Item=_to_item(dict(job)), ConditionExpression="attribute_not_exists(id)")
        )
        return job, True

    async def get(self, job_id: str, *, now: float) -> Job | None:
        item = await self._read(job_id)
        if item is None or float(item["expires_at"]) < now:
            return None
        job = _job(item)
        if (due := overdue(job, now)) is not None:
            status, error = due
            await self.settle(job_id, now=now, status=cast(Literal["failed", "expired"], status), error=error)
            again = await self._read(job_id)
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
        item = await self._read(job_id)
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
        await self._call(lambda: self._table.delete_item(Key={"id": job_id}))

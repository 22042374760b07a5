"""The DynamoDB table the template creates (``JOBS_TABLE``), as every store on AWS uses it.

Single-table design, string key ``id``: jobs (``<32 hex>``), their idempotency records
(``idem#…``), API keys (``key#<sha256>``) and key names (``keyname#<name>``), the queue's
tickets (``queue#t#<ticket id>``), its state (``queue#state``) and the drain lease
(``queue#drain``; see :mod:`servicekit.queue.dynamo_store`). The GSI
``by_owner`` (partition ``owner``, sort ``created_at``) lists a caller's jobs; key items sit in
it under the reserved owner ``#keys`` (no caller's name starts with ``#``), so listing keys is
a Query, never a Scan of every job. TTL on ``expires_at`` (epoch seconds); TTL deletion can
lag, so readers ignore expired items themselves.

boto3 is blocking: every call runs in a worker thread. botocore's errors are translated here, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar, cast

import anyio

from servicekit.errors import UpstreamError

T = TypeVar("T")
OWNER_INDEX = "by_owner"
KEYS_OWNER = "#keys"
CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
TRANSACTION_CONFLICT = "TransactionConflictException"


class ConditionFailed(Exception):
    """A conditional write found the item in another state (DynamoDB's ConditionalCheckFailed)."""


class Conflict(Exception):
    """Another transaction was writing the same item at that moment: try again (TransactionConflict)."""


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB numbers are Decimals; None attributes are simply left out."""
    item: dict[str, Any] = json.loads(json.dumps(data), parse_float=Decimal)
    return {k: v for k, v in item.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return cast(dict[str, Any], plain(item))


class DynamoTable:
    def __init__(self, table: Any = None, *, connect: Callable[[], Any] | None = None) -> None:
        """``table`` is a boto3 DynamoDB Table resource, or ``connect`` makes one on first use
        (boto3 is a slow import; a runner that only serves /v1/run never pays for it)."""
        if (table is None) == (connect is None):
            raise ValueError("give either a table or a way to connect to one")
        self._given = table
        self._connect = connect

    @property
    def table(self) -> Any:
        if self._given is None and self._connect is not None:
            self._given = self._connect()
        return self._given

    async def call(self, operation: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError  # with boto3: on first use

        try:
            return await anyio.to_thread.run_sync(operation)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == CONDITION_FAILED:
                raise ConditionFailed from exc
            if code == TRANSACTION_CONFLICT:
                raise Conflict from exc
            if code == TRANSACTION_CANCELED:
                reasons = {reason.get("Code") for reason in exc.response.get("CancellationReasons", [])}
                if "ConditionalCheckFailed" in reasons:
                    raise ConditionFailed from exc
                if "TransactionConflict" in reasons:
                    raise Conflict from exc
            raise UpstreamError(f"The jobs table failed: {code}.") from exc
        except BotoCoreError as exc:
            raise UpstreamError(f"The jobs table cannot be reached: {type(exc).__name__}.") from exc

    async def read(self, key: str) -> dict[str, Any] | None:
        response = await self.call(lambda: self.table.get_item(Key={"id": key}, ConsistentRead=True))
        item: dict[str, Any] | None = response.get("Item")
        return item

    async def query_owner(
        self, owner: str, *, newest_first: bool, start: dict[str, Any] | None = None, page: int = 100
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of the ``by_owner`` index: the items and where the next page starts (or None)."""
        from boto3.dynamodb.conditions import Key

        arguments: dict[str, Any] = {
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": Key("owner").eq(owner),
            "ScanIndexForward": not newest_first,
            "Limit": page,
        }
        if start is not None:
            arguments["ExclusiveStartKey"] = start
        response = await self.call(lambda: self.table.query(**arguments))
        return list(response.get("Items", [])), response.get("LastEvaluatedKey")

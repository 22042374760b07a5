"""API keys in the DynamoDB table (AWS); see :mod:`servicekit.state.keys` and :mod:`servicekit.state.dynamo`.

Two items per key: ``key#<sha256>`` (the record, found by the hash a caller presents) and
``keyname#<name>`` (written first, conditionally, which makes names unique, and maps a name
to its hash for ``revoke``). Key records carry ``owner = "#keys"`` so the ``by_owner`` index
lists them oldest first without scanning the jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from servicekit.state.dynamo import KEYS_OWNER, ConditionFailed, DynamoTable, from_item, to_item
from servicekit.state.keys import ApiKey, KeyNameTaken

KEY_PREFIX = "key#"
NAME_PREFIX = "keyname#"


def _key(item: dict[str, Any]) -> ApiKey:
    data = from_item(item)
    return {
        "name": data["name"],
        "key_hash": data["id"].removeprefix(KEY_PREFIX),
        "created_at": float(data["created_at"]),
        "revoked_at": None if data.get("revoked_at") is None else float(data["revoked_at"]),
        "weight": int(data["weight"]),
        "max_waiting": None if data.get("max_waiting") is None else int(data["max_waiting"]),
        "models": cast(list[str] | None, data.get("models")),
    }


class DynamoKeyStore:
    def __init__(self, table: Any = None, *, connect: Callable[[], Any] | None = None) -> None:
        """``table`` is a boto3 DynamoDB Table resource, or ``connect`` makes one on first use."""
        self._db = DynamoTable(table, connect=connect)

    async def add(self, key: ApiKey) -> None:
        record = {
            "id": KEY_PREFIX + key["key_hash"],
            "owner": KEYS_OWNER,
            "name": key["name"],
            "created_at": key["created_at"],
            "revoked_at": key["revoked_at"],
            "weight": key["weight"],
            "max_waiting": key["max_waiting"],
            "models": key["models"],
        }
        name_id = NAME_PREFIX + key["name"]
        # Claim the name first, then write the record; undo the claim if the record fails.
        # (Two conditional puts rather than TransactWriteItems, which moto cannot emulate;
        # a crash between them leaves the name taken by no key: `add` it under another name.)
        try:
            await self._put_new({"id": name_id, "key_hash": key["key_hash"]})
        except ConditionFailed:
            raise KeyNameTaken(f"a key named {key['name']!r} exists already") from None
        try:
            await self._put_new(record)
        except BaseException:
            await self._db.call(lambda: self._db.table.delete_item(Key={"id": name_id}))
            raise

    async def _put_new(self, item: dict[str, Any]) -> None:
        await self._db.call(
            lambda: self._db.table.put_item(Item=to_item(item), ConditionExpression="attribute_not_exists(id)")
        )

    async def lookup(self, key_hash: str) -> ApiKey | None:
        item = await self._db.read(KEY_PREFIX + key_hash)
        return None if item is None else _key(item)

    async def revoke(self, name: str, *, now: float) -> bool:
        entry = await self._db.read(NAME_PREFIX + name)
        if entry is None:
            return False
        try:
            await self._db.call(
                lambda: self._db.table.update_item(
                    Key={"id": KEY_PREFIX + str(entry["key_hash"])},
                    UpdateExpression="SET revoked_at = :now",
                    ConditionExpression="attribute_exists(id) AND attribute_not_exists(revoked_at)",
                    ExpressionAttributeValues=to_item({":now": now}),
                )
            )
        except ConditionFailed:
            return False
        return True

    async def list(self) -> list[ApiKey]:
        keys: list[ApiKey] = []
        start: dict[str, Any] | None = None
        while True:
            items, start = await self._db.query_owner(KEYS_OWNER, newest_first=False, start=start)
            keys.extend(_key(item) for item in items)
            if start is None:
                return keys

    async def any_active(self) -> bool:
        start: dict[str, Any] | None = None
        while True:
            items, start = await self._db.query_owner(KEYS_OWNER, newest_first=False, start=start)
            if any(item.get("revoked_at") is None for item in items):
                return True
            if start is None:
                return False

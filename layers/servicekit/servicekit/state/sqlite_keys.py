"""API keys in the state database (local mode and compose); see :mod:`servicekit.state.keys`."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from servicekit.state.keys import ApiKey, KeyNameTaken
from servicekit.state.sqlite import StateDatabase

COLUMNS = "name, key_hash, created_at, revoked_at, weight, max_waiting, models"


def _key(row: tuple[Any, ...]) -> ApiKey:
    name, key_hash, created_at, revoked_at, weight, max_waiting, models = row
    return {
        "name": name,
        "key_hash": key_hash,
        "created_at": created_at,
        "revoked_at": revoked_at,
        "weight": weight,
        "max_waiting": max_waiting,
        "models": None if models is None else list(json.loads(models)),
    }


class SqliteKeyStore:
    def __init__(self, database: StateDatabase) -> None:
        self.database = database

    async def add(self, key: ApiKey) -> None:
        def add(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM keys WHERE name = ?", (key["name"],)).fetchone() is not None:
                return False
            models = None if key["models"] is None else json.dumps(key["models"])
            db.execute(
                f"INSERT INTO keys ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key["name"],
                    key["key_hash"],
                    key["created_at"],
                    key["revoked_at"],
                    key["weight"],
                    key["max_waiting"],
                    models,
                ),
            )
            return True

        if not await self.database.write(add):
            raise KeyNameTaken(f"a key named {key['name']!r} exists already")

    async def lookup(self, key_hash: str) -> ApiKey | None:
        def lookup(db: sqlite3.Connection) -> ApiKey | None:
            row = db.execute(f"SELECT {COLUMNS} FROM keys WHERE key_hash = ?", (key_hash,)).fetchone()
            return None if row is None else _key(row)

        return await self.database.read(lookup)

    async def revoke(self, name: str, *, now: float) -> bool:
        def revoke(db: sqlite3.Connection) -> bool:
            cursor = db.execute("UPDATE keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name))
            return cursor.rowcount == 1

        return await self.database.write(revoke)

    async def list(self) -> list[ApiKey]:
        def every(db: sqlite3.Connection) -> list[ApiKey]:
            return [_key(row) for row in db.execute(f"SELECT {COLUMNS} FROM keys ORDER BY created_at, name")]

        return await self.database.read(every)

    async def any_active(self) -> bool:
        def any_active(db: sqlite3.Connection) -> bool:
            return db.execute("SELECT 1 FROM keys WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None

        return await self.database.read(any_active)

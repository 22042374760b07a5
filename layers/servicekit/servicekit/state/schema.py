"""The state database's schema, as numbered migrations (``PRAGMA user_version`` is the number applied).

Append a migration to add something; never edit one that has shipped. Each runs in the same write
transaction that records its number, so a process that dies mid-way leaves the database as it was.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: API keys, jobs and their idempotency records.
    """
    CREATE TABLE keys (
        key_hash    TEXT PRIMARY KEY,           -- SHA-256 of the key, hex (the key itself is never stored)
        name        TEXT NOT NULL UNIQUE,       -- never reused, even once revoked
        created_at  REAL NOT NULL,
        revoked_at  REAL,
        weight      INTEGER NOT NULL,
        max_waiting INTEGER,
        models      TEXT                        -- a JSON list, or NULL for every allowed model
    );
    CREATE INDEX keys_by_age ON keys (created_at, name);

    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,              -- the caller's name
        status      TEXT NOT NULL,
        created_at  REAL NOT NULL,
        expires_at  REAL NOT NULL,              -- the TTL: rows past it are ignored, then swept
        document    TEXT NOT NULL               -- the whole Job, as JSON
    );
    CREATE INDEX jobs_by_owner ON jobs (owner, created_at DESC, id DESC);
    CREATE INDEX jobs_by_expiry ON jobs (expires_at);

    CREATE TABLE idempotency (
        owner        TEXT NOT NULL,             -- keys are namespaced per caller
        key_hash     TEXT NOT NULL,             -- SHA-256 of the Idempotency-Key
        job_id       TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        expires_at   REAL NOT NULL,
        PRIMARY KEY (owner, key_hash)
    );
    CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
    """,
    # 2: the fair queue (servicekit.queue): tickets, each class's virtual clock, each caller's
    # virtual finish per class, and each model's recent generation times (for ETAs).
    """
    CREATE TABLE queue_tickets (
        seq          INTEGER PRIMARY KEY,       -- arrival order (above every ticket present)
        id           TEXT NOT NULL UNIQUE,
        caller       TEXT NOT NULL,
        weight       INTEGER NOT NULL,
        ticket_class TEXT NOT NULL,             -- interactive or batch
        model        TEXT NOT NULL,
        created_at   REAL NOT NULL,
        vstart       REAL NOT NULL,             -- virtual start, fixed at enqueue
        status       TEXT NOT NULL,             -- waiting or running
        holder       TEXT,                      -- the process waiting for it, NULL for a job
        lease_until  REAL,                      -- a held waiting ticket not renewed by then is dropped
        started_at   REAL,
        job_id       TEXT UNIQUE
    );
    CREATE TABLE queue_clocks (
        ticket_class TEXT PRIMARY KEY,
        vtime        REAL NOT NULL              -- the virtual start of the ticket that started last
    );
    CREATE TABLE queue_callers (
        ticket_class TEXT NOT NULL,
        caller       TEXT NOT NULL,
        vfinish      REAL NOT NULL,
        PRIMARY KEY (ticket_class, caller)
    );
    CREATE TABLE queue_models (
        model        TEXT PRIMARY KEY,
        recent       TEXT NOT NULL              -- a JSON list of recent generation times, seconds
    );
    """,
)

LATEST = len(MIGRATIONS)


def version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the database to ``LATEST``; the caller holds a write transaction (BEGIN IMMEDIATE)."""
    current = version(connection)
    if current > LATEST:
        raise sqlite3.DatabaseError(f"the state database is at schema {current}, newer than this code ({LATEST})")
    for number in range(current + 1, LATEST + 1):
        # No semicolons inside comments: statements are split on them.
        for statement in MIGRATIONS[number - 1].split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {number}")

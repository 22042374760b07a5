"""The one SQLite database in STATE_DIR (``state.db``), shared by chat and every runner process.

Every call runs in a worker thread, never on the event loop. WAL mode lets readers go on
while one process writes; a writer that finds the database locked waits ``BUSY_TIMEOUT_S``
inside SQLite (in its thread), then the caller retries after an asynchronous back-off until
``BUSY_BUDGET_S`` has passed, and gives up with ``StateBusy`` (503 + Retry-After). Another
local process holding a lock can therefore delay a store call by at most about two seconds
and never stall the loop (``/healthz`` keeps answering). sqlite3's errors are translated here,
once, into the servicekit tree.

Within a process, writers queue on the event loop (cancellable) for one worker thread of their
own, and ``urgent`` writes (the slot's handoff: claim and finish) for another, which goes first
at the gate to SQLite's write lock. Without it, a burst of arrivals (50 enqueue writes) took
all 40 of anyio's worker threads, raced SQLite's busy handler, and the handoff's write waited
for a thread behind them.

Connections are opened lazily in the thread that first needs one, kept in a small pool of
idle ones, and never carried across a fork.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
from anyio.lowlevel import RunVar

from servicekit.errors import StateBusy, StateError
from servicekit.state import schema
from servicekit.state.statedir import create_private_file, private_dir

T = TypeVar("T")

DB_NAME = "state.db"
# Inside SQLite, per attempt: short, because a waiting worker thread cannot be cancelled.
BUSY_TIMEOUT_S = 0.05
# Across attempts, with an asynchronous back-off between them: well inside chat's 27 s deadline.
BUSY_BUDGET_S = 2.0
BACKOFF_FIRST_S = 0.01
BACKOFF_MAX_S = 0.2
MAX_IDLE_CONNECTIONS = 4
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class _Locked(Exception):
    """One attempt found the database locked by another connection (SQLITE_BUSY)."""


# One worker thread for ordinary writes and one for urgent ones, per event loop.
_WRITERS: RunVar[anyio.CapacityLimiter] = RunVar("sqlite_writers")
_URGENT_WRITERS: RunVar[anyio.CapacityLimiter] = RunVar("sqlite_urgent_writers")
_READERS: RunVar[anyio.CapacityLimiter] = RunVar("sqlite_readers")
# Readers run side by side in WAL mode, but their work is Python under one GIL: a few threads,
# not anyio's forty (32 clients refused by a read each: 550-680 -> 790-890 refusals/s).
READER_THREADS = 2


def _limiter(var: RunVar[anyio.CapacityLimiter], threads: int = 1) -> anyio.CapacityLimiter:
    try:
        return var.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(threads)
        var.set(limiter)
        return limiter


class _WriteGate:
    """One writer of this process at a time; urgent writers go first. Used in worker threads only."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0

    def enter(self, urgent: bool, timeout_s: float) -> bool:
        """Take the gate within ``timeout_s``; False when it stayed taken (the caller backs off)."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            self._urgent_waiting += urgent
            try:
                while self._busy or (not urgent and self._urgent_waiting):
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._condition.wait(left):
                        return False
                self._busy = True
                return True
            finally:
                self._urgent_waiting -= urgent

    def leave(self) -> None:
        with self._condition:
            self._busy = False
            self._condition.notify_all()


class StateDatabase:
    """Checks STATE_DIR and pre-creates ``state.db`` (0600, no link followed) when built.

    ``await db.read(fn)`` / ``await db.write(fn)`` run ``fn(connection)`` in a worker thread,
    inside a transaction (``BEGIN`` / ``BEGIN IMMEDIATE``), committed when ``fn`` returns.
    """

    def __init__(
        self, directory: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S, busy_budget_s: float = BUSY_BUDGET_S
    ) -> None:
        self.busy_timeout_s = busy_timeout_s
        self.busy_budget_s = busy_budget_s
        self.directory = private_dir(directory)
        self.path = self.directory / DB_NAME
        # SQLite creates -wal and -shm with the database file's own mode, so 0600 here makes all three 0600.
        create_private_file(self.path)
        self._idle: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._migrated = False
        self._write_gate = _WriteGate()
        self._loop_connection: sqlite3.Connection | None = None

    async def read(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(operation, "BEGIN")

    async def write(self, operation: Callable[[sqlite3.Connection], T], *, urgent: bool = False) -> T:
        """``urgent``: the slot's handoff. It is tried once on the event loop without waiting at all
        (no writer of this process in its thread, SQLite's lock free at once: ``busy_timeout`` 0,
        and no checkpoint, so a commit is one write into the page cache); otherwise it goes to
        its worker thread, where this process's other writers wait until it is done. Measured,
        the thread's two hops were ~0.5 of the handoff's ~0.8 ms write under load."""
        if urgent:
            connection = self._loop_connection
            if connection is None or self._pid != os.getpid():  # opening may wait (a migration): not here
                connection = await anyio.to_thread.run_sync(self._connect_for_loop)
            if self._write_gate.enter(urgent=True, timeout_s=0.0):
                try:
                    return self._on(connection, operation, "BEGIN IMMEDIATE")
                except _Locked:
                    pass  # another process writes: wait for it in a thread, as any writer does
                except StateError:
                    self._loop_connection = None  # opened afresh next time
                    connection.close()
                    raise
                finally:
                    self._write_gate.leave()
        return await self._run(operation, "BEGIN IMMEDIATE", urgent)

    def _connect_for_loop(self) -> sqlite3.Connection:
        """The connection urgent writes try on the event loop: never waits for a lock, never checkpoints
        (the worker threads' connections do, when they commit)."""
        with self._guard:
            if self._pid != os.getpid():  # forked: the parent's connections are not ours to use
                self._idle.clear()
                self._loop_connection = None
                self._pid = os.getpid()
        if self._loop_connection is None:
            connection = self._connect()
            connection.execute("PRAGMA busy_timeout = 0")
            connection.execute("PRAGMA wal_autocheckpoint = 0")
            self._loop_connection = connection
        return self._loop_connection

    async def _run(self, operation: Callable[[sqlite3.Connection], T], begin: str, urgent: bool = False) -> T:
        deadline = time.monotonic() + self.busy_budget_s
        backoff = BACKOFF_FIRST_S
        while True:
            try:
                if begin == "BEGIN":
                    return await anyio.to_thread.run_sync(
                        self._attempt, operation, begin, limiter=_limiter(_READERS, READER_THREADS)
                    )
                limiter = _limiter(_URGENT_WRITERS if urgent else _WRITERS)
                return await anyio.to_thread.run_sync(self._gated_attempt, operation, begin, urgent, limiter=limiter)
            except _Locked as locked:
                if time.monotonic() + backoff > deadline:
                    raise StateBusy(
                        "The state database is locked by another process; try again shortly.", retry_after_s=1
                    ) from locked.__cause__
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    # -- in the worker thread --------------------------------------------------------------------

    def _gated_attempt(self, operation: Callable[[sqlite3.Connection], T], begin: str, urgent: bool) -> T:
        if not self._write_gate.enter(urgent, self.busy_timeout_s):
            raise _Locked
        try:
            return self._attempt(operation, begin)
        finally:
            self._write_gate.leave()

    def _attempt(self, operation: Callable[[sqlite3.Connection], T], begin: str) -> T:
        try:
            connection = self._checkout()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        healthy = True
        try:
            return self._on(connection, operation, begin)
        except StateError:
            healthy = False
            raise
        finally:
            self._checkin(connection, healthy)

    def _on(self, connection: sqlite3.Connection, operation: Callable[[sqlite3.Connection], T], begin: str) -> T:
        """One transaction on ``connection``; a locked database raises ``_Locked``, other errors ours."""
        try:
            connection.execute(begin)
            try:
                result = operation(connection)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            return result
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    @staticmethod
    def _translate(exc: sqlite3.Error) -> Exception:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY_CODES:
            return _Locked()
        return StateError(f"The state database failed: {exc}.")

    def _checkout(self) -> sqlite3.Connection:
        with self._guard:
            if self._pid != os.getpid():  # forked: the parent's connections are not ours to use
                self._idle.clear()
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _checkin(self, connection: sqlite3.Connection, healthy: bool) -> None:
        with self._guard:
            if healthy and len(self._idle) < MAX_IDLE_CONNECTIONS and not connection.in_transaction:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are exactly the BEGIN/COMMIT issued in _attempt.
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False, cached_statements=64
        )
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL never corrupts; a power cut may lose the last commits, not a crash.
            connection.execute("PRAGMA synchronous = NORMAL")
            if not self._migrated:
                self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        if schema.version(connection) != schema.LATEST:
            connection.execute("BEGIN IMMEDIATE")
            try:
                schema.migrate(connection)  # re-reads the version: another process may have just done it
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        self._migrated = True

    def close(self) -> None:
        with self._guard:
            idle, self._idle = self._idle, []
            if self._loop_connection is not None:
                idle.append(self._loop_connection)
                self._loop_connection = None
        for connection in idle:
            connection.close()

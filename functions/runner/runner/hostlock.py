"""The host-wide half of the slot: one lock file shared by every runner process on the host.

The lock itself is ``filelock``'s native descriptor lock (``flock`` on Unix): the kernel drops it
when its holder dies, even by SIGKILL, so a crashed runner never wedges the host, and any tool
using ``filelock.FileLock`` on the same path contends with us correctly.

Waiting is a cheap non-blocking attempt (about 2 µs) repeated every ``poll_interval_s`` by at
most one waiter per process (the in-process queue stands in front). ``FileLock.acquire`` would
cost ~100 µs per attempt and poll every 50 ms; a blocking ``flock`` in a thread cannot be
cancelled. A second file, ``<lock>.waiters``, carries a shared lock from every process that is
polling, so a process that just released can tell whether others are waiting and step aside
for them instead of re-taking the lock at once (fairness across processes).
"""

from __future__ import annotations

import fcntl
import os
from typing import Protocol

import filelock
from servicekit.state.statedir import DIR_MODE, open_private


class HostLock(Protocol):
    """What the slot needs from a host-wide lock."""

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def set_waiting(self, waiting: bool) -> None: ...

    def others_waiting(self) -> bool: ...

    def held_elsewhere(self) -> bool: ...


class FileHostLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock_fd: int | None = None
        self._waiting_fd: int | None = None
        self._probe_fd: int | None = None
        self._held = False
        self._waiting = False

    def _open(self, path: str) -> int:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        return open_private(path)  # 0600, and a planted symlink is refused (ELOOP)

    def _fds(self) -> tuple[int, int, int]:
        # Opened on first use, in the process that uses them (never inherited across a fork).
        if self._lock_fd is None or self._waiting_fd is None or self._probe_fd is None:
            self._lock_fd = self._open(self.path)
            self._waiting_fd = self._open(self.path + ".waiters")
            self._probe_fd = self._open(self.path + ".waiters")
        return self._lock_fd, self._waiting_fd, self._probe_fd

    def try_acquire(self) -> bool:
        lock_fd, _, _ = self._fds()
        assert not self._held, "the host lock is not re-entrant"
        self._held = filelock.lock_descriptor(lock_fd, blocking=False)
        return self._held

    def release(self) -> None:
        if self._held and self._lock_fd is not None:
            filelock.unlock_descriptor(self._lock_fd)
            self._held = False

    def set_waiting(self, waiting: bool) -> None:
        _, waiting_fd, _ = self._fds()
        if waiting != self._waiting:
            fcntl.flock(waiting_fd, fcntl.LOCK_SH if waiting else fcntl.LOCK_UN)
            self._waiting = waiting

    def others_waiting(self) -> bool:
        _, _, probe_fd = self._fds()
        if self._waiting:
            # Our own shared lock hides everyone else's: assume others wait, so the caller queues
            # behind this process's dispatcher (which is polling already) instead of jumping ahead.
            return True
        try:
            fcntl.flock(probe_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe_fd, fcntl.LOCK_UN)
        return False

    def held_elsewhere(self) -> bool:
        """True when another process holds the lock (never steals it: a free lock is released at once)."""
        if self._held:
            return False
        if self.try_acquire():
            self.release()
            return False
        return True

    def close(self) -> None:
        self.release()
        for fd in (self._lock_fd, self._waiting_fd, self._probe_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._waiting_fd = self._probe_fd = None
        self._waiting = False

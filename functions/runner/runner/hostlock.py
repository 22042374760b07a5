"""The host-wide half of the slot: one lock file shared by every runner process on the host.

The lock itself is ``filelock``'s native descriptor lock (``flock`` on Unix): the kernel drops it
when its holder dies, even by SIGKILL, so a crashed runner never wedges the host, and any tool
using ``filelock.FileLock`` on the same path contends with us correctly.

Every attempt is non-blocking (about 2 µs), so nothing another local user locks can stall the
event loop; who should take the lock next is the queue's business (:mod:`runner.slot`), not
the lock's. The file is opened 0600 without following a link (``O_NOFOLLOW``).
"""

from __future__ import annotations

import os
from typing import Protocol

import filelock
from servicekit.state.statedir import DIR_MODE, open_private


class HostLock(Protocol):
    """What the slot needs from a host-wide lock: non-blocking attempts only."""

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def held_elsewhere(self) -> bool: ...


class FileHostLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock_fd: int | None = None
        self._held = False

    def _fd(self) -> int:
        # Opened on first use, in the process that uses it (never inherited across a fork).
        if self._lock_fd is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
            self._lock_fd = open_private(self.path)  # 0600, and a planted symlink is refused (ELOOP)
        return self._lock_fd

    def try_acquire(self) -> bool:
        """Take the lock now if it is free; False when anyone holds it (this process included)."""
        if self._held:
            return False
        self._held = filelock.lock_descriptor(self._fd(), blocking=False)
        return self._held

    def release(self) -> None:
        if self._held and self._lock_fd is not None:
            filelock.unlock_descriptor(self._lock_fd)
            self._held = False

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
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._lock_fd = None

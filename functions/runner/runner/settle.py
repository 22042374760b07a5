"""The settle: a short wait before the slot passes on after a generation that did not end cleanly.

Ollama notices a closed request only when it writes its next token. So when a generation is
cancelled or fails (client gone, deadline, a broken stream), Ollama may still be generating it
for up to one inter-token interval after we closed the response; handing the slot on at once
would let the next request overlap it at Ollama. The slot therefore calls
:meth:`Settle.after_abnormal_end` *after* Ollama's response is closed and *before* it releases,
and waits about one inter-token interval (``SETTLE_FACTOR`` times the median of the recent gaps
between chunks, measured by :class:`TokenPace`), never more than ``SETTLE_MAX_S``.

A holder that died (SIGKILL) cannot settle: the kernel frees its lock at once. So every holder
records itself in ``<lock>.holder`` (beside the lock in STATE_DIR, opened ``O_NOFOLLOW``) when
it takes the lock and marks a clean release before letting go. Whoever takes the lock next and
finds no clean-release mark knows it took over from a dead holder whose generation may still be
running, and :meth:`Settle.before_first_send_after_takeover` waits the same settle before its
first request reaches Ollama. Both marks are one ``pwrite`` of a few bytes (a few µs), never a
lock or a blocking wait.

The interface the slot uses (four calls)::

    settle.lock_taken()          # right after the host lock was acquired
    settle.lock_released()       # right before the host lock is let go
    await settle.before_first_send_after_takeover()   # once granted, before sending to Ollama
    await settle.after_abnormal_end()                  # before releasing after a failed/cancelled generation

:class:`SettlingHostLock` wraps any :class:`~runner.hostlock.HostLock` so the first two happen
wherever the slot takes or lets go of the lock.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import deque

from servicekit.state.statedir import DIR_MODE, open_private

from runner.hostlock import HostLock

# Ollama stops a closed request at its next token: one interval, with room for its scheduling.
SETTLE_FACTOR = 1.5
RECENT_GAPS = 64
HOLDER_SUFFIX = ".holder"  # <lock>.holder, beside the lock
HELD = b"held"
RELEASED = b"free"
MARK_SIZE = 32


class TokenPace:
    """The recent gaps between Ollama's chunks, in seconds (fed by the Ollama client)."""

    def __init__(self) -> None:
        self._gaps: deque[float] = deque(maxlen=RECENT_GAPS)

    def record(self, gap_s: float) -> None:
        self._gaps.append(gap_s)

    def interval_s(self) -> float | None:
        """The median recent inter-token gap; None before any was measured."""
        return statistics.median(self._gaps) if self._gaps else None


class HolderMark:
    """``<lock>.holder``: who took the lock, and whether they let it go cleanly."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None:  # opened in the process that uses it, never inherited across a fork
            os.makedirs(os.path.dirname(self.path) or ".", mode=DIR_MODE, exist_ok=True)
            self._fd = open_private(self.path)  # 0600, and a planted symlink is refused (ELOOP)
        return self._fd

    def take(self) -> bool:
        """Record this process as the holder; True when the previous holder never released cleanly."""
        fd = self._descriptor()
        previous = os.pread(fd, MARK_SIZE, 0)
        os.pwrite(fd, f"{HELD.decode()} {os.getpid()}".encode().ljust(MARK_SIZE), 0)
        return previous.startswith(HELD)

    def release(self) -> None:
        os.pwrite(self._descriptor(), f"{RELEASED.decode()} {os.getpid()}".encode().ljust(MARK_SIZE), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Settle:
    def __init__(self, *, max_s: float, mark: HolderMark | None, pace: TokenPace | None = None) -> None:
        self.max_s = max_s
        self.pace = pace or TokenPace()
        self._mark = mark
        self._took_over = False
        self.waited_s = 0.0  # total time spent settling (tests and the bench read it)

    @property
    def took_over(self) -> bool:
        """Whether the lock was last taken from a holder that died, and nothing was sent since."""
        return self._took_over

    def delay_s(self) -> float:
        """About one recent inter-token interval, capped; the cap before any was measured."""
        interval = self.pace.interval_s()
        return self.max_s if interval is None else min(self.max_s, interval * SETTLE_FACTOR)

    def close(self) -> None:
        if self._mark is not None:
            self._mark.close()

    def lock_taken(self) -> None:
        if self._mark is not None and self._mark.take():
            self._took_over = True

    def lock_released(self) -> None:
        self._took_over = False
        if self._mark is not None:
            self._mark.release()

    async def after_abnormal_end(self) -> None:
        """Wait for Ollama to notice the closed request; call with the response closed, the slot held."""
        await self._wait(self.delay_s())

    async def before_first_send_after_takeover(self) -> None:
        """After taking the lock over from a holder that died: let its generation stop first."""
        if self._took_over:
            self._took_over = False
            await self._wait(self.delay_s())

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` even through a cancellation (re-raised after): releasing early is the bug."""
        if seconds <= 0:
            return
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + seconds
        cancelled = False
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                await asyncio.sleep(left)
            except asyncio.CancelledError:
                cancelled = True
        self.waited_s += time.perf_counter() - started
        if cancelled:
            raise asyncio.CancelledError


class SettlingHostLock:
    """A :class:`HostLock` that tells the settle whenever the lock is taken or let go."""

    def __init__(self, inner: HostLock, settle: Settle) -> None:
        self._inner = inner
        self._settle = settle
        self._held = False

    def try_acquire(self) -> bool:
        if self._held:  # not re-entrant: held here already
            return False
        self._held = self._inner.try_acquire()
        if self._held:
            self._settle.lock_taken()
        return self._held

    def release(self) -> None:
        if self._held:  # never mark "free" over another holder's "held"
            self._held = False
            self._settle.lock_released()
        self._inner.release()

    def held_elsewhere(self) -> bool:
        return self._inner.held_elsewhere()

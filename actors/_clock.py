"""Time, injected: the system clock for live runs, a fake one for tests and replay."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """What the runtime and actors read time from."""

    @property
    def waking(self) -> int:
        """Sleepers this clock has woken that have not resumed yet (settling waits for them)."""
        ...

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until `seconds` have passed on this clock."""
        ...


class SystemClock:
    """The wall clock; sleeps on the event loop."""

    waking = 0
    """Real time wakes sleepers through the event loop itself: never pending here."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to.

    Sleepers wake when `advance` or `set` moves the time past their deadline.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, anyio.Event]] = []
        self.waking = 0
        """Sleepers woken by the last move that have not resumed yet."""

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        self._sleepers.append((self._now + seconds, wake))
        try:
            await wake.wait()
        finally:
            if wake.is_set():
                self.waking -= 1

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` and wake every sleeper now due."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self.set(self._now + seconds)

    def set(self, at: float) -> None:
        """Move time forward to `at` (never backwards) and wake every sleeper now due."""
        self._now = max(self._now, at)
        due = [s for s in self._sleepers if s[0] <= self._now]
        self._sleepers = [s for s in self._sleepers if s[0] > self._now]
        for _, wake in sorted(due, key=lambda s: s[0]):
            self.waking += 1
            wake.set()

    def next_deadline(self) -> float | None:
        """When the earliest sleeper is due, if any."""
        return min((deadline for deadline, _ in self._sleepers), default=None)

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock."""
        return len(self._sleepers)

"""Counting outstanding work, so that tests and replay can wait for quiet instead of sleeping."""

from __future__ import annotations

import anyio


class Activity:
    """Outstanding work per holder: envelopes queued or being handled, tasks running.

    The runtime is quiet when nothing is outstanding. Tasks waiting on the clock do not count.
    """

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._total = 0
        self._quiet = anyio.Event()
        self._quiet.set()
        self.changed: anyio.Event | None = None
        """Set on every release of work, while someone watches (replay's driver)."""

    def begin(self, holder: str, n: int = 1) -> None:
        if self._total == 0:
            self._quiet = anyio.Event()
        held = self._held
        held[holder] = held.get(holder, 0) + n
        self._total += n

    def end(self, holder: str, n: int = 1) -> None:
        held = self._held
        left = held[holder] - n
        if left > 0:
            held[holder] = left
        else:
            del held[holder]
        self._total -= n
        if self._total == 0:
            self._quiet.set()
        if self.changed is not None:
            self.changed.set()

    @property
    def outstanding(self) -> int:
        return self._total

    def holds(self, holder: str) -> bool:
        """Whether `holder` has outstanding work now."""
        return holder in self._held

    def holders(self) -> frozenset[str]:
        """Who holds outstanding work now."""
        return frozenset(self._held)

    def describe(self) -> str:
        """Who holds work, e.g. `guard: 2, recorder: 1`."""
        return ", ".join(f"{name}: {n}" for name, n in sorted(self._held.items())) or "nobody"

    async def wait_quiet(self) -> None:
        while self._total:
            await self._quiet.wait()

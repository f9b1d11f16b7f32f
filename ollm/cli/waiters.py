"""Waiting for the event that answers a command (registered before the command publishes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from actors import Envelope


class Waiter:
    def __init__(self, predicate: Callable[[object], bool]) -> None:
        self.predicate = predicate
        self.event: object | None = None
        self.arrived = anyio.Event()

    async def wait(self, timeout: float) -> object | None:
        """The matching event, or None after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            await self.arrived.wait()
        return self.event


class Waiters:
    """A bus tap that hands matching events to whoever is waiting for them."""

    def __init__(self) -> None:
        self._pending: list[Waiter] = []

    def expect(self, predicate: Callable[[object], bool]) -> Waiter:
        waiter = Waiter(predicate)
        self._pending.append(waiter)
        return waiter

    def tap(self, envelope: Envelope[Any]) -> None:
        for waiter in list(self._pending):
            if waiter.predicate(envelope.event):
                waiter.event = envelope.event
                waiter.arrived.set()
                self._pending.remove(waiter)

"""Asking a running session something and waiting for its answer: `request(event, until=…)`.

The answer is found by causation, not by guessing from what comes next: a bus tap (it sees
every envelope synchronously, in `seq` order) follows the request's own envelope and every
envelope caused by it, directly or through others, and hands back the first one that
`until` accepts. Another turn or command running meanwhile cannot answer for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from actors import Envelope

Until = Callable[[object], bool] | tuple[type, ...]


def _matcher(until: Until) -> Callable[[object], bool]:
    if isinstance(until, tuple):
        kinds = until
        return lambda event: isinstance(event, kinds)
    return until


class Pending:
    """One request waiting for its answer."""

    def __init__(self, event: object, until: Until, caused: bool) -> None:
        self.event = event
        self.until = _matcher(until)
        self.caused = caused
        self.family: set[int] = set()
        """The request's `seq` and those of everything it caused so far."""
        self.answer: Envelope[Any] | None = None
        self.arrived = anyio.Event()

    def offer(self, envelope: Envelope[Any]) -> bool:
        """Look at one envelope; True once the answer is found."""
        if not self.family:
            if envelope.event is self.event:
                self.family.add(envelope.seq)
            return False
        if self.caused:
            if envelope.causation not in self.family:
                return False
            self.family.add(envelope.seq)
        if self.until(envelope.event):
            self.answer = envelope
            self.arrived.set()
            return True
        return False


class Requests:
    """The tap that answers pending requests."""

    def __init__(self) -> None:
        self._pending: list[Pending] = []

    def expect(self, event: object, until: Until, *, caused: bool = True) -> Pending:
        """Register before publishing `event`: the tap must see its envelope."""
        pending = Pending(event, until, caused)
        self._pending.append(pending)
        return pending

    def forget(self, pending: Pending) -> None:
        if pending in self._pending:
            self._pending.remove(pending)

    def tap(self, envelope: Envelope[Any]) -> None:
        for pending in list(self._pending):
            if pending.offer(envelope):
                self._pending.remove(pending)

"""Publish/subscribe by event type, with one bounded mailbox per subscriber."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import anyio
import msgspec

from ._activity import Activity
from ._clock import Clock
from ._envelope import Envelope
from ._mailbox import Mailbox, Overflow

Tap = Callable[[Envelope[Any]], None]
"""A synchronous observer of every envelope, called in `seq` order at publication."""

Gate = Callable[[object, str, int | None], Awaitable[None]]
"""Awaited before an (awaited) publication is stamped, with the event, its source and its
cause: replay holds a derived event back until the inputs recorded before it are in."""

# The envelope being handled by the current task: what a publication from it was caused by.
# Each task has its own value, so concurrent handlers never see each other's.
_causation: ContextVar[int | None] = ContextVar("actors_causation", default=None)


def set_causation(seq: int | None) -> None:
    """Publications from the current task (and tasks it starts) name `seq` as their cause."""
    _causation.set(seq)


class MailboxStatistics(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    queued: int
    capacity: int
    dropped: int


class BusStatistics(msgspec.Struct, frozen=True, kw_only=True):
    published: int
    mailboxes: tuple[MailboxStatistics, ...]


class Bus:
    """An in-process event bus.

    Every publication gets the next `seq` and the clock's time, is shown to every tap, then is
    put in the mailbox of every subscriber whose accepted types match the event.
    """

    def __init__(
        self, clock: Clock, activity: Activity | None = None, *, last_seq: int = 0
    ) -> None:
        self.clock = clock
        self.activity = activity or Activity()
        self._seq = last_seq
        self._mailboxes: list[Mailbox] = []
        self._routes: dict[type, tuple[Mailbox, ...]] = {}
        self._taps: list[Tap] = []
        self.gate: Gate | None = None

    def subscribe(
        self,
        name: str,
        accepts: tuple[type, ...],
        *,
        capacity: int = 1024,
        overflow: Overflow = Overflow.BACKPRESSURE,
    ) -> Mailbox:
        """A new mailbox that receives every event that is an instance of one of `accepts`."""
        mailbox = Mailbox(
            name, accepts, capacity=capacity, overflow=overflow, activity=self.activity
        )
        self._mailboxes.append(mailbox)
        self._routes.clear()
        return mailbox

    def unsubscribe(self, mailbox: Mailbox) -> None:
        if mailbox in self._mailboxes:
            self._mailboxes.remove(mailbox)
            self._routes.clear()
        mailbox.close()

    def add_tap(self, tap: Tap) -> Callable[[], None]:
        """Show every envelope to `tap` as it is published; returns a function that removes it."""
        self._taps.append(tap)
        return lambda: self._taps.remove(tap)

    def _targets(self, event: object) -> tuple[Mailbox, ...]:
        kind = type(event)
        targets = self._routes.get(kind)
        if targets is None:
            targets = tuple(m for m in self._mailboxes if m.wants(event))
            self._routes[kind] = targets
        return targets

    def _stamp(self, event: object, source: str, causation: int | None) -> Envelope[Any]:
        self._seq += 1
        if causation is None:
            causation = _causation.get()
        envelope = Envelope(
            seq=self._seq, at=self.clock.now(), source=source, causation=causation, event=event
        )
        for tap in self._taps:
            tap(envelope)
        return envelope

    async def publish(
        self, event: object, *, source: str, causation: int | None = None
    ) -> Envelope[Any]:
        """Publish `event`, waiting while a core subscriber's mailbox is full.

        `causation` defaults to the envelope the calling task is handling.
        """
        # No checkpoint of its own: a full mailbox makes it wait, and an empty one should not
        # cost a trip through the event loop per event.
        if self.gate is not None:
            await self.gate(event, source, causation if causation is not None else _causation.get())
        envelope = self._stamp(event, source, causation)
        for mailbox in self._targets(event):
            await mailbox.put(envelope)
        return envelope

    def publish_nowait(
        self, event: object, *, source: str, causation: int | None = None
    ) -> Envelope[Any]:
        """Publish without waiting; for synchronous callers such as key bindings.

        Raises:
            anyio.WouldBlock: a core subscriber's mailbox is full; nothing was published.
        """
        targets = self._targets(event)
        for mailbox in targets:
            if mailbox.overflow is Overflow.BACKPRESSURE and mailbox.queued >= mailbox.capacity:
                raise anyio.WouldBlock
        envelope = self._stamp(event, source, causation)
        for mailbox in targets:
            mailbox.put_nowait(envelope)
        return envelope

    def statistics(self) -> BusStatistics:
        return BusStatistics(
            published=self._seq,
            mailboxes=tuple(
                MailboxStatistics(
                    name=m.name, queued=m.queued, capacity=m.capacity, dropped=m.dropped_total
                )
                for m in self._mailboxes
            ),
        )

    def close(self) -> None:
        for mailbox in self._mailboxes:
            mailbox.close()
        self._mailboxes.clear()
        self._routes.clear()

"""Bounded mailboxes: backpressure for core actors, drop-oldest plus `Lagged` for observers."""

from __future__ import annotations

import enum
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._activity import Activity
from ._envelope import Envelope
from ._events import Lagged


class Overflow(enum.Enum):
    """What a full mailbox does with the next envelope."""

    BACKPRESSURE = "backpressure"
    """The publisher waits until there is room: nothing is lost (core actors)."""
    DROP_OLDEST = "drop-oldest"
    """The oldest queued envelope is dropped and counted; the receiver is told (observers)."""


class Mailbox:
    """One subscriber's bounded queue of envelopes, fed by the bus."""

    def __init__(
        self,
        name: str,
        accepts: tuple[type, ...],
        *,
        capacity: int,
        overflow: Overflow,
        activity: Activity,
    ) -> None:
        if capacity < 1:
            raise ValueError("a mailbox needs room for at least one envelope")
        self.name = name
        self.accepts = accepts
        self.capacity = capacity
        self.overflow = overflow
        self._activity = activity
        self._send: MemoryObjectSendStream[Envelope[Any]]
        self._receive: MemoryObjectReceiveStream[Envelope[Any]]
        self._send, self._receive = anyio.create_memory_object_stream[Envelope[Any]](capacity)
        self._dropped = 0
        self.dropped_total = 0

    def wants(self, event: object) -> bool:
        return isinstance(event, self.accepts)

    async def put(self, envelope: Envelope[Any]) -> None:
        """Queue an envelope, waiting for room if this mailbox applies backpressure."""
        if self.overflow is Overflow.DROP_OLDEST:
            self.put_nowait(envelope)
            return
        self._activity.begin(self.name)
        try:
            self._send.send_nowait(envelope)
        except anyio.WouldBlock:
            try:
                await self._send.send(envelope)
            except BaseException:
                self._activity.end(self.name)
                raise

    def put_nowait(self, envelope: Envelope[Any]) -> None:
        """Queue an envelope without waiting.

        Raises:
            anyio.WouldBlock: a backpressure mailbox is full.
        """
        self._activity.begin(self.name)
        while True:
            try:
                self._send.send_nowait(envelope)
                return
            except anyio.WouldBlock:
                if self.overflow is Overflow.BACKPRESSURE:
                    self._activity.end(self.name)
                    raise
                self._receive.receive_nowait()
                self._dropped += 1
                self.dropped_total += 1
                self._activity.end(self.name)

    async def get(self) -> Envelope[Any] | Lagged:
        """The next envelope, or a `Lagged` notice first if envelopes were dropped.

        Every envelope returned must be acknowledged with `done()` once handled.
        """
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            return Lagged(dropped=dropped)
        try:
            # Drain what is queued without a trip through the event loop per envelope.
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            return await self._receive.receive()

    def done(self) -> None:
        """Acknowledge one envelope from `get()` as handled."""
        self._activity.end(self.name)

    @property
    def queued(self) -> int:
        return self._receive.statistics().current_buffer_used

    @property
    def waiting_senders(self) -> int:
        """Publishers waiting for room in this mailbox."""
        return self._send.statistics().tasks_waiting_send

    def close(self) -> None:
        # Envelopes still queued are abandoned: they no longer count as outstanding work.
        left = self.queued
        if left:
            self._activity.end(self.name, left)
        self._send.close()
        self._receive.close()

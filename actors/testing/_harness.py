"""A harness: real bus and supervisor on a fake clock, with helpers to inject and inspect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from .._clock import FakeClock
from .._envelope import Envelope
from .._ids import IdSource, SequentialIds
from .._log import Recorder
from .._runtime import Runtime, open_runtime
from .._supervisor import ChildSpec

T = TypeVar("T")


class Harness:
    """A running system under test. Everything published is kept in `published`."""

    def __init__(
        self,
        runtime: Runtime,
        clock: FakeClock,
        published: list[Envelope[Any]],
        arrived: list[anyio.Event],
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.published = published
        self._arrived = arrived

    async def publish(self, event: object, *, source: str = "harness") -> Envelope[Any]:
        """Inject an event as if it came from outside."""
        return await self.runtime.publish(event, source=source)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until the system is quiet (see `Runtime.settle`)."""
        await self.runtime.settle(timeout)

    async def inject(self, event: object, *, source: str = "harness") -> Envelope[Any]:
        """Publish, then settle: step mode."""
        envelope = await self.publish(event, source=source)
        await self.settle()
        return envelope

    async def advance(self, seconds: float) -> None:
        """Move the fake clock forward by `seconds`, stopping at every sleeper's deadline on
        the way (and settling there), as real time would."""
        target = self.clock.now() + seconds
        while True:
            due = self.clock.next_deadline()
            if due is None or due > target:
                self.clock.set(target)
                await self.settle()
                return
            self.clock.set(due)
            await self.settle()

    def events(self, kind: type[T]) -> list[T]:
        """Every published event of `kind`, in order."""
        return [e.event for e in self.published if isinstance(e.event, kind)]

    def envelopes(self, kind: type[Any]) -> list[Envelope[Any]]:
        return [e for e in self.published if isinstance(e.event, kind)]

    def expect(self, kind: type[T], where: Callable[[T], bool] | None = None) -> T:
        """The first published event of `kind` matching `where`; fails listing what was seen."""
        for event in self.events(kind):
            if where is None or where(event):
                return event
        seen = "\n  ".join(repr(e.event) for e in self.published) or "(nothing)"
        raise AssertionError(f"no {kind.__name__} was published; saw:\n  {seen}")

    async def wait_for(
        self, kind: type[T], where: Callable[[T], bool] | None = None, timeout: float = 10.0
    ) -> T:
        """Wait (in real time, for work that does I/O) until a matching event is published."""
        with anyio.fail_after(timeout):
            while True:
                for event in self.events(kind):
                    if where is None or where(event):
                        return event
                self._arrived[0] = anyio.Event()
                await self._arrived[0].wait()


@asynccontextmanager
async def open_harness(
    *specs: ChildSpec,
    clock: FakeClock | None = None,
    ids: IdSource | None = None,
    recorder: Recorder | None = None,
) -> AsyncIterator[Harness]:
    """Start `specs` on a fake clock (time 0 unless given) with sequential ids."""
    clock = clock or FakeClock()
    published: list[Envelope[Any]] = []
    arrived = [anyio.Event()]

    def tap(envelope: Envelope[Any]) -> None:
        published.append(envelope)
        arrived[0].set()

    # The tap is on before any actor starts, so what actors publish in on_start is seen too.
    async with open_runtime(
        specs, clock=clock, ids=ids or SequentialIds(), recorder=recorder, taps=(tap,)
    ) as runtime:
        yield Harness(runtime, clock, published, arrived)

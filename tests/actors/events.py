"""Small events and actors for the runtime's own tests (no domain words)."""

from __future__ import annotations

import anyio

from actors import Actor, Context, Event, Input, Lagged


class Ping(Input, frozen=True, kw_only=True, tag="test.ping"):
    n: int


class Pong(Event, frozen=True, kw_only=True, tag="test.pong"):
    n: int


class Burst(Input, frozen=True, kw_only=True, tag="test.burst"):
    count: int


class BurstDone(Event, frozen=True, kw_only=True, tag="test.burst_done"):
    count: int


TestEvent = Ping | Pong | Burst | BurstDone


class Echo(Actor[Ping]):
    """Answers every Ping with a Pong; raises on the numbers it is told to."""

    accepts = (Ping,)

    def __init__(self, fail_on: frozenset[int] = frozenset()) -> None:
        self.fail_on = fail_on

    async def handle(self, event: Ping, ctx: Context) -> None:
        if event.n in self.fail_on:
            raise ValueError(f"cannot handle {event.n}")
        await ctx.publish(Pong(n=event.n))


class Burster(Actor[Burst]):
    """Publishes `count` Pongs as fast as it can, then BurstDone."""

    accepts = (Burst,)

    async def handle(self, event: Burst, ctx: Context) -> None:
        for i in range(event.count):
            await ctx.publish(Pong(n=i))
        await ctx.publish(BurstDone(count=event.count))


class SlowObserver(Actor[Pong | Lagged]):
    """Takes whatever it is given, but only after `gate` opens."""

    accepts = (Pong,)

    def __init__(self, gate: anyio.Event, seen: list[object]) -> None:
        self.gate = gate
        self.seen = seen

    async def handle(self, event: Pong | Lagged, ctx: Context) -> None:
        await self.gate.wait()
        self.seen.append(event)

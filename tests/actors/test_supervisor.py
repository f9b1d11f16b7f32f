from __future__ import annotations

import anyio
import pytest

from actors import (
    Actor,
    ActorCrashed,
    ActorRestarted,
    ChildSpec,
    Context,
    SupervisorGaveUp,
    SupervisorGaveUpError,
)
from actors.testing import FakeClock, open_harness

from .events import Burst, BurstDone, Burster, Echo, Ping, Pong, SlowObserver

pytestmark = pytest.mark.anyio


async def test_an_actor_that_raises_is_restarted_and_handles_the_next_event():
    spec = ChildSpec(name="echo", factory=lambda: Echo(fail_on=frozenset({2})))
    async with open_harness(spec) as h:
        for n in (1, 2, 3):
            await h.inject(Ping(n=n))
        assert h.events(Pong) == [Pong(n=1), Pong(n=3)]
        crashed = h.expect(ActorCrashed)
        assert crashed.actor == "echo"
        assert crashed.error == "ValueError: cannot handle 2"
        assert crashed.event_kind == "test.ping"
        assert h.expect(ActorRestarted) == ActorRestarted(actor="echo", restarts=1)
        # The crash names the event that caused it.
        ping2 = next(e for e in h.envelopes(Ping) if e.event.n == 2)
        assert h.envelopes(ActorCrashed)[0].causation == ping2.seq


async def test_the_rest_keeps_running_while_one_actor_crashes():
    specs = (
        ChildSpec(name="fragile", factory=lambda: Echo(fail_on=frozenset({1}))),
        ChildSpec(name="sturdy", factory=Echo),
    )
    async with open_harness(*specs) as h:
        await h.inject(Ping(n=1))
        await h.inject(Ping(n=2))
        sources = [(e.source, e.event.n) for e in h.envelopes(Pong)]
        assert sources == [("sturdy", 1), ("fragile", 2), ("sturdy", 2)] or sorted(
            sources
        ) == sorted([("sturdy", 1), ("fragile", 2), ("sturdy", 2)])


async def test_crashing_past_the_intensity_limit_gives_up_with_a_clear_error():
    spec = ChildSpec(
        name="doomed",
        factory=lambda: Echo(fail_on=frozenset(range(100))),
        max_restarts=2,
        within_s=10,
    )
    published = []
    with anyio.fail_after(5), pytest.raises(SupervisorGaveUpError) as info:
        async with open_harness(spec) as h:
            published = h.published
            for n in range(10):
                await h.publish(Ping(n=n))
            await h.settle()
    assert str(info.value) == (
        "actor 'doomed' crashed 3 times within 10 s (last error: ValueError: cannot handle 2), "
        "so the runtime stopped"
    )
    kinds = [type(e.event).__name__ for e in published if not isinstance(e.event, Ping)]
    assert kinds == [
        "ActorCrashed",
        "ActorRestarted",
        "ActorCrashed",
        "ActorRestarted",
        "ActorCrashed",
        "SupervisorGaveUp",
    ]
    gave_up = next(e.event for e in published if isinstance(e.event, SupervisorGaveUp))
    assert gave_up.crashes == 3


async def test_the_intensity_window_is_measured_on_the_injected_clock():
    spec = ChildSpec(
        name="flaky",
        factory=lambda: Echo(fail_on=frozenset(range(100))),
        max_restarts=2,
        within_s=10,
    )
    async with open_harness(spec, clock=FakeClock()) as h:
        for n in range(6):
            await h.inject(Ping(n=n))
            await h.advance(6)  # never three crashes within 10 s
        assert len(h.events(ActorCrashed)) == 6
        assert h.events(SupervisorGaveUp) == []


class CrashesOnStart(Actor[Ping]):
    accepts = (Ping,)
    starts = 0

    async def on_start(self, ctx: Context) -> None:
        type(self).starts += 1
        if type(self).starts == 1:
            raise RuntimeError("no config yet")

    async def handle(self, event: Ping, ctx: Context) -> None:
        await ctx.publish(Pong(n=event.n))


async def test_a_crash_while_starting_is_restarted_too():
    CrashesOnStart.starts = 0
    async with open_harness(ChildSpec(name="starter", factory=CrashesOnStart)) as h:
        await h.settle()
        await h.inject(Ping(n=5))
        assert h.expect(ActorCrashed).event_kind == ""
        assert h.events(Pong) == [Pong(n=5)]


class FailsInBackground(Actor[Ping]):
    accepts = (Ping,)

    async def handle(self, event: Ping, ctx: Context) -> None:
        async def work() -> None:
            if event.n == 1:
                raise OSError("disk went away")
            await ctx.publish(Pong(n=event.n))

        ctx.start_soon(work)


async def test_a_background_task_failure_crashes_its_actor_which_restarts():
    async with open_harness(ChildSpec(name="bg", factory=FailsInBackground)) as h:
        await h.inject(Ping(n=1))
        await h.inject(Ping(n=2))
        assert h.expect(ActorCrashed).error == "OSError: disk went away"
        assert h.events(Pong) == [Pong(n=2)]
        # Work started in the background names the envelope that started it as its cause.
        ping2 = h.envelopes(Ping)[1]
        assert h.envelopes(Pong)[0].causation == ping2.seq


class Sleeper(Actor[Ping]):
    accepts = (Ping,)

    async def handle(self, event: Ping, ctx: Context) -> None:
        await ctx.sleep(30)
        await ctx.publish(Pong(n=event.n))


async def test_waiting_on_the_clock_counts_as_quiet_and_advancing_wakes_it():
    async with open_harness(ChildSpec(name="sleeper", factory=Sleeper)) as h:
        await h.inject(Ping(n=1))
        assert h.events(Pong) == []
        await h.advance(29)
        assert h.events(Pong) == []
        await h.advance(1)
        assert h.events(Pong) == [Pong(n=1)]
        assert h.envelopes(Pong)[0].at == 30.0


async def test_a_slow_observer_never_blocks_core_actors():
    gate = anyio.Event()
    seen: list[object] = []
    specs = (
        ChildSpec(name="burster", factory=Burster),
        ChildSpec(name="ui", factory=lambda: SlowObserver(gate, seen), observer=True, capacity=8),
    )
    async with open_harness(*specs) as h:
        await h.publish(Burst(count=2000))
        # The core actor finishes its burst while the observer is stuck on its first event.
        assert await h.wait_for(BurstDone) == BurstDone(count=2000)
        assert seen == []
        gate.set()
        await h.settle()
    lagged = [e for e in seen if type(e).__name__ == "Lagged"]
    pongs = [e for e in seen if isinstance(e, Pong)]
    assert len(lagged) == 1
    assert len(pongs) == 1 + 8, "the first event it held, then the newest that fit"
    assert lagged[0].dropped == 2000 - len(pongs)  # type: ignore[attr-defined]
    assert pongs[-1] == Pong(n=1999)

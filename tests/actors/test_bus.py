from __future__ import annotations

import anyio
import pytest

from actors import Bus, Envelope, FakeClock, Lagged, Overflow

from .events import Ping, Pong

pytestmark = pytest.mark.anyio


async def test_publish_stamps_seq_time_and_source_and_routes_by_type():
    clock = FakeClock(100.0)
    bus = Bus(clock)
    pings = bus.subscribe("pings", (Ping,))
    everything = bus.subscribe("all", (object,))
    first = await bus.publish(Ping(n=1), source="outside")
    clock.advance(2)
    second = await bus.publish(Pong(n=1), source="echo", causation=first.seq)
    assert (first.seq, first.at, first.source, first.causation) == (1, 100.0, "outside", None)
    assert (second.seq, second.at, second.causation) == (2, 102.0, 1)
    assert pings.queued == 1
    assert everything.queued == 2
    assert await pings.get() == first
    bus.close()


async def test_every_subscriber_gets_its_own_copy():
    bus = Bus(FakeClock())
    a = bus.subscribe("a", (Ping,))
    b = bus.subscribe("b", (Ping,))
    await bus.publish(Ping(n=7), source="t")
    got_a, got_b = await a.get(), await b.get()
    assert got_a == got_b
    bus.close()


async def test_core_mailbox_applies_backpressure():
    bus = Bus(FakeClock())
    box = bus.subscribe("core", (Ping,), capacity=1)
    await bus.publish(Ping(n=1), source="t")
    with pytest.raises(anyio.WouldBlock):
        bus.publish_nowait(Ping(n=2), source="t")
    assert bus.statistics().published == 1, "a refused publish_nowait publishes nothing"
    finished = anyio.Event()

    async def publisher() -> None:
        await bus.publish(Ping(n=2), source="t")
        finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(publisher)
        while box.waiting_senders == 0:
            await anyio.lowlevel.checkpoint()
        assert not finished.is_set(), "the publisher must wait for room"
        first = await box.get()
        box.done()
        await finished.wait()
    second = await box.get()
    assert isinstance(first, Envelope)
    assert isinstance(second, Envelope)
    assert [first.event, second.event] == [Ping(n=1), Ping(n=2)]
    bus.close()


async def test_observer_drops_oldest_and_is_told_how_many():
    bus = Bus(FakeClock())
    box = bus.subscribe("ui", (Pong,), capacity=3, overflow=Overflow.DROP_OLDEST)
    for n in range(10):
        await bus.publish(Pong(n=n), source="t")
    assert await box.get() == Lagged(dropped=7)
    rest = []
    for _ in range(3):
        item = await box.get()
        assert isinstance(item, Envelope)
        rest.append(item.event)
        box.done()
    assert rest == [Pong(n=7), Pong(n=8), Pong(n=9)]
    assert bus.activity.outstanding == 0
    stats = bus.statistics()
    assert stats.mailboxes[0].dropped == 7
    bus.close()


async def test_taps_see_every_envelope_in_order():
    bus = Bus(FakeClock())
    seen: list[int] = []
    remove = bus.add_tap(lambda e: seen.append(e.seq))
    for n in range(3):
        await bus.publish(Ping(n=n), source="t")
    remove()
    await bus.publish(Ping(n=9), source="t")
    assert seen == [1, 2, 3]
    bus.close()

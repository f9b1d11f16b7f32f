from __future__ import annotations

import pytest

from actors import ChildSpec, FakeClock, LogWriter, Recorder, SeededIds, read_log, replay
from actors.testing import open_harness

from .events import Echo, Ping, Pong, TestEvent
from .test_log import HEADER

pytestmark = pytest.mark.anyio


class Doubler(Echo):
    async def handle(self, event, ctx):
        await ctx.publish(Pong(n=event.n * 2))


def is_input(event: object) -> bool:
    return isinstance(event, Ping)


async def record(path, specs, count=20):
    writer = LogWriter(path, HEADER)
    async with open_harness(
        *specs, clock=FakeClock(1000.0), ids=SeededIds("s"), recorder=Recorder(writer)
    ) as h:
        for n in range(count):
            h.clock.advance(1)
            await h.inject(Ping(n=n))
    writer.close()
    return read_log(path, TestEvent)


async def test_replay_of_a_faithful_system_matches(tmp_path):
    specs = [ChildSpec(name="echo", factory=Echo)]
    log = await record(tmp_path / "log.jsonl", specs)
    result = await replay(log, specs, is_input=is_input)
    assert result.divergence is None
    assert (result.inputs, result.derived) == (20, 20)


async def test_a_changed_policy_reports_the_first_divergence_with_both_events(tmp_path):
    log = await record(tmp_path / "log.jsonl", [ChildSpec(name="echo", factory=Echo)])
    result = await replay(log, [ChildSpec(name="echo", factory=Doubler)], is_input=is_input)
    divergence = result.divergence
    assert divergence is not None
    # Ping(0) → Pong(0) either way; the first difference is the answer to Ping(1), seq 4.
    assert divergence.seq == 4
    assert divergence.expected is not None and divergence.expected.event == Pong(n=1)
    assert divergence.actual is not None and divergence.actual.event == Pong(n=2)
    assert divergence.describe() == (
        'replay diverged at seq 4: expected echo: {"kind":"test.pong","n":1}, '
        'got echo: {"kind":"test.pong","n":2}'
    )


async def test_a_missing_or_extra_derived_event_is_a_divergence(tmp_path):
    log = await record(tmp_path / "log.jsonl", [ChildSpec(name="echo", factory=Echo)], count=3)
    silent = await replay(
        log,
        [ChildSpec(name="echo", factory=lambda: Echo(fail_on=frozenset({1})))],
        is_input=is_input,
    )
    assert silent.divergence is not None
    assert silent.divergence.seq == 4
    assert silent.divergence.actual is None or silent.divergence.actual.event != Pong(n=1)

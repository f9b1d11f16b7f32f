from __future__ import annotations

import pytest

from actors import (
    Actor,
    ChildSpec,
    Context,
    Event,
    FakeClock,
    Input,
    LogWriter,
    Recorder,
    SeededIds,
    read_log,
    replay,
)
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


class Note(Input, frozen=True, kw_only=True, tag="test.note"):
    n: int


class Verdict(Event, frozen=True, kw_only=True, tag="test.verdict"):
    n: int
    note: int


class Judge(Actor[Pong | Note]):
    """Decides on each Pong with the last Note it has seen: its decision depends on the order
    in which an input and a derived event reach it."""

    accepts = (Pong, Note)

    def __init__(self) -> None:
        self.note = -1

    async def handle(self, event: Pong | Note, ctx: Context) -> None:
        if isinstance(event, Note):
            self.note = event.n
        else:
            await ctx.publish(Verdict(n=event.n, note=self.note))


Recorded = TestEvent | Note | Verdict


async def test_an_input_that_came_between_an_earlier_inputs_consequences_replays_in_place(
    tmp_path,
):
    """Live, a Note arrives after a Ping but before the Pong derived from it, so the judge
    sees the Note first. Replay feeds one input at a time: without holding the Pong back
    until the Note is in, the judge would decide without it."""
    specs = [ChildSpec(name="echo", factory=Echo), ChildSpec(name="judge", factory=Judge)]
    writer = LogWriter(tmp_path / "log.jsonl", HEADER)
    async with open_harness(*specs, ids=SeededIds("s"), recorder=Recorder(writer)) as h:
        for n in range(50):
            await h.publish(Ping(n=n), source="outside")
            if n % 3 == 0:  # no settle between: the Note overtakes the Pong
                await h.publish(Note(n=n), source="outside")
            await h.settle()
    writer.close()
    log = read_log(tmp_path / "log.jsonl", Recorded)
    verdicts = [e.event for e in log.envelopes if isinstance(e.event, Verdict)]
    assert [v.note for v in verdicts[:4]] == [0, 0, 0, 3], "the live interleaving"
    result = await replay(log, specs, is_input=lambda e: isinstance(e, Ping | Note))
    assert result.divergence is None, result.divergence.describe()
    assert result.derived == 100


async def test_what_a_boundary_published_is_fed_to_the_replayed_actors(tmp_path):
    """A command's request (not an input type) published by the user interface reaches the
    core actors live; replay must feed it too, or their answer to it goes missing."""
    specs = [ChildSpec(name="judge", factory=Judge)]
    writer = LogWriter(tmp_path / "log.jsonl", HEADER)
    async with open_harness(*specs, ids=SeededIds("s"), recorder=Recorder(writer)) as h:
        await h.inject(Note(n=4), source="cli")
        await h.inject(Pong(n=1), source="cli")
    writer.close()
    log = read_log(tmp_path / "log.jsonl", Recorded)
    result = await replay(log, specs, is_input=lambda e: isinstance(e, Note))
    assert result.divergence is None, result.divergence.describe()
    assert [e.event for e in result.envelopes if isinstance(e.event, Verdict)] == [
        Verdict(n=1, note=4)
    ]

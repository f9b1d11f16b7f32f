"""Replay: feed a recorded log's inputs to a fresh system and compare what it derives."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ._activity import Activity
from ._actor import _holder
from ._clock import FakeClock
from ._envelope import Envelope
from ._exceptions import NotQuietError
from ._ids import IdSource, SeededIds
from ._log import LogContents
from ._runtime import open_runtime
from ._supervisor import ChildSpec

IsInput = Callable[[object], bool]


@dataclass(frozen=True)
class Divergence:
    """The first place where the replay derived something other than the recording."""

    seq: int
    """The recorded `seq` of the expected envelope (or of its input, when one was extra)."""
    expected: Envelope[Any] | None
    actual: Envelope[Any] | None

    def describe(self) -> str:
        def show(envelope: Envelope[Any] | None) -> str:
            if envelope is None:
                return "nothing"
            return f"{envelope.source}: {_encode(envelope.event)}"

        return (
            f"replay diverged at seq {self.seq}: expected {show(self.expected)}, "
            f"got {show(self.actual)}"
        )


@dataclass(frozen=True)
class ReplayResult:
    inputs: int
    derived: int
    """Derived envelopes compared from the recording."""
    divergence: Divergence | None
    envelopes: tuple[Envelope[Any], ...]
    """Everything the replay published, in order."""


Key = tuple[int, str]
"""(recorded seq of the input an envelope descends from, or 0; the publishing source)."""

Fed = Callable[[Envelope[Any]], bool]
"""Whether a recorded envelope is fed to the replayed actors (rather than derived by them)."""


class _Order:
    """Keeps the replay in the recorded order.

    Live, inputs arrive while earlier ones are still being worked on, so an actor may see an
    input between two events derived from an earlier one. Replay feeds inputs one at a time,
    so this gate holds a derived event back until every input recorded before its recorded
    counterpart has been fed: each actor's mailbox then receives what it received live.
    """

    def __init__(
        self,
        inputs: Sequence[Envelope[Any]],
        expected: dict[Key, list[Envelope[Any]]],
        sources: set[str],
        is_input: IsInput,
        activity: Activity,
    ) -> None:
        self.pending: deque[int] = deque(e.seq for e in inputs)
        """Recorded seqs of the inputs not fed yet."""
        self.expected = expected
        self.sources = sources
        self.is_input = is_input
        self.activity = activity
        self.produced: dict[Key, int] = defaultdict(int)
        self.by_seq: dict[int, Envelope[Any]] = {}
        self.to_recorded: dict[int, int] = {}
        self.roots: dict[int, int] = {}
        self.feeding: object | None = None
        self.waiting: dict[str, int] = defaultdict(int)
        """Holders whose publications wait at the gate (their work does not count as busy)."""
        self.generation = 0
        self.moved = anyio.Event()

    def tap(self, envelope: Envelope[Any]) -> None:
        self.by_seq[envelope.seq] = envelope
        if self.feeding is not None and envelope.event is self.feeding:
            self.to_recorded[envelope.seq] = self.pending[0]

    def root(self, seq: int | None) -> int:
        """The recorded seq of the fed input that `seq` descends from (0: none)."""
        chain: list[int] = []
        found = 0
        while seq is not None:
            if seq in self.roots:
                found = self.roots[seq]
                break
            chain.append(seq)
            if seq in self.to_recorded:
                found = self.to_recorded[seq]
                break
            envelope = self.by_seq.get(seq)
            seq = envelope.causation if envelope is not None else None
        for link in chain:
            self.roots[link] = found
        return found

    async def gate(self, event: object, source: str, causation: int | None) -> None:
        if source not in self.sources or self.is_input(event):
            return
        key = (self.root(causation), source)
        index = self.produced[key]
        self.produced[key] += 1
        want = self.expected.get(key, [])
        if index >= len(want):
            return  # an extra event: let it out, the comparison reports it
        target = want[index].seq
        holder = _holder.get()
        while self.pending and self.pending[0] < target and holder is not None:
            generation = self.generation
            self.waiting[holder] += 1
            self.activity.end(holder)
            try:
                await self.moved.wait()
            finally:
                if self.generation == generation:  # cancelled while held: busy again
                    self.waiting[holder] -= 1
                    if not self.waiting[holder]:
                        del self.waiting[holder]
                    self.activity.begin(holder)

    async def idle(self, clock: FakeClock, timeout: float) -> None:
        """Wait until all that is left to do is held at the gate."""
        activity = self.activity
        with anyio.move_on_after(timeout) as scope:
            while True:
                if clock.waking:
                    # Sleepers woken by a fake clock count as busy again once they run.
                    await anyio.lowlevel.checkpoint()
                    continue
                changed = activity.changed = anyio.Event()
                if activity.holders() <= self.waiting.keys():
                    break
                await changed.wait()
        activity.changed = None
        if scope.cancelled_caught:
            raise NotQuietError(timeout, self.activity.describe())

    def fed(self) -> None:
        """The next input is in: let every held event go, each busy again from this moment
        (before it runs), so that the input after waits for what it does."""
        self.pending.popleft()
        self.feeding = None
        for holder, count in self.waiting.items():
            self.activity.begin(holder, count)
        self.waiting.clear()
        self.generation += 1
        self.moved.set()
        self.moved = anyio.Event()


async def replay(
    log: LogContents,
    specs: Sequence[ChildSpec],
    *,
    is_input: IsInput,
    ids: IdSource | None = None,
    settle_timeout: float = 10.0,
) -> ReplayResult:
    """Re-publish the inputs of `log`, one at a time, and compare the derived events.

    The system is built from `specs` on a fake clock set to each input's recorded time, with
    ids from the log's seed. What is fed: every input, and every envelope published by a
    source that is not replayed (a boundary actor, the user). Each fed envelope goes in once
    the system has done all it can before it; a derived event is held back until the inputs
    recorded before it are in (`_Order`), so every actor sees its events in the recorded
    order. Derived events are compared per input they descend from (by causation) and per
    source, in order; only sources present in `specs` are compared.
    """
    recorded = log.envelopes
    sources = {spec.name for spec in specs}

    def fed(envelope: Envelope[Any]) -> bool:
        return is_input(envelope.event) or envelope.source not in sources

    inputs = [e for e in recorded if fed(e)]
    expected = _group(recorded, fed, sources, lambda seq: seq)
    start = recorded[0].at if recorded else log.header.created_at
    clock = FakeClock(start)
    published: list[Envelope[Any]] = []
    async with open_runtime(
        specs, clock=clock, ids=ids or SeededIds(log.header.id_seed)
    ) as runtime:
        order = _Order(inputs, expected, sources, is_input, runtime.bus.activity)
        remove = runtime.bus.add_tap(order.tap)
        remove_published = runtime.bus.add_tap(published.append)
        runtime.bus.gate = order.gate
        try:
            for envelope in inputs:
                await order.idle(clock, settle_timeout)
                clock.set(envelope.at)
                order.feeding = envelope.event
                await runtime.publish(envelope.event, source=envelope.source)
                order.fed()
            await runtime.settle(settle_timeout)
        finally:
            runtime.bus.gate = None
            remove()
            remove_published()
    actual = _group(published, fed, sources, lambda seq: order.to_recorded.get(seq, 0))
    # A crash that tore the log may have cut the last input's consequences short; a crash
    # the run went on from, those of every input since the one before.
    cut_short = {inputs[-1].seq} if log.torn_line and inputs else set()
    since = 0
    for crash in sorted(log.crashes):
        cut_short |= {e.seq for e in inputs if since < e.seq <= crash}
        since = crash
    return ReplayResult(
        inputs=len(inputs),
        derived=sum(len(v) for v in expected.values()),
        divergence=_first_divergence(expected, actual, cut_short),
        envelopes=tuple(published),
    )


def _group(
    envelopes: Sequence[Envelope[Any]],
    fed: Fed,
    sources: set[str],
    recorded_seq: Callable[[int], int],
) -> dict[Key, list[Envelope[Any]]]:
    by_seq = {e.seq: e for e in envelopes}
    roots: dict[int, int] = {}

    def root(envelope: Envelope[Any]) -> int:
        chain: list[int] = []
        current: Envelope[Any] | None = envelope
        found = 0
        while current is not None:
            if current.seq in roots:
                found = roots[current.seq]
                break
            chain.append(current.seq)
            if fed(current):
                found = recorded_seq(current.seq)
                break
            current = by_seq.get(current.causation) if current.causation is not None else None
        for seq in chain:
            roots[seq] = found
        return found

    groups: dict[Key, list[Envelope[Any]]] = defaultdict(list)
    for envelope in envelopes:
        if fed(envelope):
            continue
        groups[(root(envelope), envelope.source)].append(envelope)
    return groups


def _first_divergence(
    expected: dict[Key, list[Envelope[Any]]],
    actual: dict[Key, list[Envelope[Any]]],
    cut_short: set[int],
) -> Divergence | None:
    found: list[Divergence] = []
    for key in expected.keys() | actual.keys():
        want, got = expected.get(key, []), actual.get(key, [])
        length = max(len(want), len(got)) if key[0] not in cut_short else len(want)
        for index in range(length):
            w = want[index] if index < len(want) else None
            g = got[index] if index < len(got) else None
            if w is not None and g is not None and w.event == g.event:
                continue
            seq = w.seq if w is not None else key[0]
            found.append(Divergence(seq=seq, expected=w, actual=g))
            break
    # Earliest recorded position first; among extras from one input, the earliest published.
    return (
        min(found, key=lambda d: (d.seq, d.actual.seq if d.actual else float("inf")))
        if found
        else None
    )


def _encode(event: object) -> str:
    return msgspec.json.encode(event).decode()

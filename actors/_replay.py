"""Replay: feed a recorded log's inputs to a fresh system and compare what it derives."""

from __future__ import annotations

from array import array
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ._activity import Activity
from ._actor import _holder
from ._clock import FakeClock
from ._envelope import Envelope
from ._events import RuntimeEvent
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


class _Roots:
    """seq → the recorded seq of the fed input it descends from (0: none), for every seq of
    a run: one machine word each, not a dictionary entry."""

    def __init__(self) -> None:
        self._roots = array("q")

    def __setitem__(self, seq: int, root: int) -> None:
        if seq >= len(self._roots):
            self._roots.extend([0] * (seq + 1 - len(self._roots)))
        self._roots[seq] = root

    def get(self, seq: int | None) -> int:
        return self._roots[seq] if seq is not None and 0 <= seq < len(self._roots) else 0


class _Comparison:
    """Compares derived events per key as both sides produce them, keeping only what is
    not matched yet: memory follows the skew between recording and replay, not the log."""

    def __init__(self) -> None:
        self.waiting: dict[Key, deque[Envelope[Any]]] = defaultdict(deque)
        """Per key, the unmatched events of one side; `side` says which."""
        self.side: dict[Key, bool] = {}
        """True: the waiting events are recorded ones; False: the replay's."""
        self.found: dict[Key, Divergence] = {}
        self.compared = 0

    def add(self, key: Key, envelope: Envelope[Any], recorded: bool) -> None:
        if recorded:
            self.compared += 1
        if key in self.found:
            return
        queue = self.waiting[key]
        if not queue or self.side[key] == recorded:
            self.side[key] = recorded
            queue.append(envelope)
            return
        other = queue.popleft()
        if not queue:
            del self.waiting[key], self.side[key]
        want, got = (envelope, other) if recorded else (other, envelope)
        if want.event != got.event:
            self.found[key] = Divergence(seq=want.seq, expected=want, actual=got)

    def result(self, tolerated: Callable[[int], bool]) -> Divergence | None:
        found = list(self.found.values())
        for key, queue in self.waiting.items():
            if key in self.found or not queue:
                continue
            if self.side[key]:  # recorded, never derived again
                found.append(Divergence(seq=queue[0].seq, expected=queue[0], actual=None))
            elif not tolerated(key[0]):  # derived, never recorded
                found.append(Divergence(seq=key[0], expected=None, actual=queue[0]))
        # Earliest recorded position first; among extras from one input, the earliest.
        return (
            min(found, key=lambda d: (d.seq, d.actual.seq if d.actual else float("inf")))
            if found
            else None
        )


class _Order:
    """Keeps the replay in the recorded order, reading the recording as it goes.

    Live, inputs arrive while earlier ones are still being worked on, so an actor may see an
    input between two events derived from an earlier one. Replay feeds the recording's
    inputs one at a time; this gate holds each derived event back until every input
    recorded before its recorded counterpart has been fed, reading ahead in the recording
    when it must learn where that counterpart is. Each actor's mailbox then receives what
    it received live.
    """

    def __init__(self, sources: set[str], is_input: IsInput, activity: Activity) -> None:
        self.sources = sources
        self.is_input = is_input
        self.activity = activity
        self.targets: dict[Key, deque[int]] = defaultdict(deque)
        """Per key, the recorded seqs of the derived events read and not yet published."""
        self.inputs: deque[Envelope[Any]] = deque()
        """Inputs read ahead and not fed yet, in order."""
        self.exhausted = False
        self.wanting = 0
        """Held publications whose counterpart has not been read yet."""
        self.roots = _Roots()
        """Replay seq → recorded seq of the fed input it descends from (0: none)."""
        self.feeding: tuple[object, int] | None = None
        self.waiting: dict[str, int] = defaultdict(int)
        """Holders whose publications wait at the gate (their work does not count as busy)."""
        self.generation = 0
        self.moved = anyio.Event()

    def tap(self, envelope: Envelope[Any]) -> None:
        feeding = self.feeding
        if feeding is not None and envelope.event is feeding[0]:
            self.roots[envelope.seq] = feeding[1]
        else:
            cause = envelope.causation
            self.roots[envelope.seq] = self.roots.get(cause)

    async def gate(self, event: object, source: str, causation: int | None) -> None:
        if source not in self.sources or self.is_input(event) or isinstance(event, RuntimeEvent):
            return
        key = (self.roots.get(causation), source)
        # A publication outside any handling holds no work of its own.
        holder = _holder.get()
        counted = holder if holder is not None and self.activity.holds(holder) else None
        while not self.targets.get(key):
            if self.exhausted:
                return  # an extra event: the comparison reports it
            self.wanting += 1
            try:
                await self._hold(counted)
            finally:
                self.wanting -= 1
        target = self.targets[key].popleft()
        if not self.targets[key]:
            del self.targets[key]
        while self.inputs and self.inputs[0].seq < target:
            await self._hold(counted)

    async def _hold(self, holder: str | None) -> None:
        generation = self.generation
        if holder is not None:
            self.waiting[holder] += 1
            self.activity.end(holder)
        try:
            await self.moved.wait()
        finally:
            if holder is not None and self.generation == generation:  # cancelled while held
                self.waiting[holder] -= 1
                if not self.waiting[holder]:
                    del self.waiting[holder]
                self.activity.begin(holder)

    def release(self) -> None:
        """Let every held event look again, each busy again from this moment (before it
        runs), so that what comes next waits for what it does."""
        for holder, count in self.waiting.items():
            self.activity.begin(holder, count)
        self.waiting.clear()
        self.generation += 1
        self.moved.set()
        self.moved = anyio.Event()

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


async def replay(
    log: LogContents,
    specs: Sequence[ChildSpec],
    *,
    is_input: IsInput,
    ids: IdSource | None = None,
    settle_timeout: float = 10.0,
    envelopes: Iterable[Envelope[Any]] | None = None,
    keep: bool = True,
    observe: Callable[[Envelope[Any]], None] | None = None,
) -> ReplayResult:
    """Re-publish the inputs of `log`, one at a time, and compare the derived events.

    The system is built from `specs` on a fake clock set to each input's recorded time, with
    ids from the log's seed. What is fed: every input, and every envelope published by a
    source that is not replayed (a boundary actor, the user). Each fed envelope goes in once
    the system has done all it can before it; a derived event is held back until the inputs
    recorded before it are in (`_Order`), so every actor sees its events in the recorded
    order. Derived events are compared per input they descend from (by causation) and per
    source, in order; only sources present in `specs` are compared.

    The recording is read once, in order: `envelopes` (an iterator, e.g. rows decoded as
    they are read) instead of `log.envelopes` streams it. `keep=False` keeps none of what
    the replay published (`observe` sees each envelope instead): memory then follows the
    system's state, not the length of the log.
    """
    sources = {spec.name for spec in specs}

    def fed(envelope: Envelope[Any]) -> bool:
        return is_input(envelope.event) or envelope.source not in sources

    recorded = iter(envelopes if envelopes is not None else log.envelopes)
    first = next(recorded, None)
    clock = FakeClock(first.at if first is not None else log.header.created_at)
    published: list[Envelope[Any]] = []
    comparison = _Comparison()
    recorded_roots = _Roots()
    inputs = 0
    last_input = 0
    async with open_runtime(
        specs, clock=clock, ids=ids or SeededIds(log.header.id_seed)
    ) as runtime:
        order = _Order(sources, is_input, runtime.bus.activity)

        def tap(envelope: Envelope[Any]) -> None:
            order.tap(envelope)
            if keep:
                published.append(envelope)
            if observe is not None:
                observe(envelope)
            if not fed(envelope) and envelope.source in sources:
                comparison.add((order.roots.get(envelope.seq), envelope.source), envelope, False)

        def read(envelope: Envelope[Any]) -> None:
            nonlocal last_input
            if fed(envelope):
                recorded_roots[envelope.seq] = envelope.seq
                order.inputs.append(envelope)
                last_input = envelope.seq
                return
            cause = envelope.causation
            root = recorded_roots.get(cause)
            recorded_roots[envelope.seq] = root
            if envelope.source in sources:
                key = (root, envelope.source)
                order.targets[key].append(envelope.seq)
                comparison.add(key, envelope, True)

        async def feed() -> None:
            nonlocal inputs
            envelope = order.inputs.popleft()
            clock.set(envelope.at)
            order.feeding = (envelope.event, envelope.seq)
            await runtime.publish(envelope.event, source=envelope.source)
            order.feeding = None
            inputs += 1

        remove = runtime.bus.add_tap(tap)
        runtime.bus.gate = order.gate
        try:
            envelope = first
            order.exhausted = envelope is None
            while True:
                if envelope is not None and (not order.inputs or order.wanting):
                    # Read on: nothing is ready to feed, or a held event must learn where
                    # its counterpart is (reading ahead is safe: inputs wait their turn).
                    wanted = order.wanting
                    read(envelope)
                    envelope = next(recorded, None)
                    order.exhausted = envelope is None
                    order.release()
                    if wanted:  # let the held events look at what was read
                        await order.idle(clock, settle_timeout)
                    continue
                if not order.inputs:
                    break
                await order.idle(clock, settle_timeout)
                if order.wanting and envelope is not None:
                    continue
                await feed()
                order.release()
            await runtime.settle(settle_timeout)
        finally:
            runtime.bus.gate = None
            remove()

    crashes = sorted(log.crashes)

    def tolerated(root: int) -> bool:
        # A crash that tore the log may have cut the last input's consequences short; a
        # crash the run went on from, those of every input since the one before.
        if log.torn_line and root == last_input:
            return True
        since = 0
        for crash in crashes:
            if since < root <= crash:
                return True
            since = crash
        return False

    return ReplayResult(
        inputs=inputs,
        derived=comparison.compared,
        divergence=comparison.result(tolerated),
        envelopes=tuple(published),
    )


def _encode(event: object) -> str:
    return msgspec.json.encode(event).decode()

"""Replay: feed a recorded log's inputs to a fresh system and compare what it derives."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ._clock import FakeClock
from ._envelope import Envelope
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
    ids from the log's seed. Derived events are compared per input they descend from (by
    causation) and per source, in order, so the interleaving of independent actors does
    not matter; only sources present in `specs` are compared.
    """
    recorded = log.envelopes
    inputs = [e for e in recorded if is_input(e.event)]
    start = recorded[0].at if recorded else log.header.created_at
    clock = FakeClock(start)
    published: list[Envelope[Any]] = []
    replay_to_recorded: dict[int, int] = {}
    async with open_runtime(
        specs, clock=clock, ids=ids or SeededIds(log.header.id_seed)
    ) as runtime:
        remove = runtime.bus.add_tap(published.append)
        try:
            for envelope in inputs:
                clock.set(envelope.at)
                sent = await runtime.publish(envelope.event, source=envelope.source)
                replay_to_recorded[sent.seq] = envelope.seq
                await runtime.settle(settle_timeout)
        finally:
            remove()
    sources = {spec.name for spec in specs}
    expected = _group(recorded, is_input, sources, lambda seq: seq)
    actual = _group(published, is_input, sources, lambda seq: replay_to_recorded.get(seq, 0))
    # A crash that tore the log may have cut the last input's consequences short.
    cut_short = inputs[-1].seq if log.torn_line and inputs else None
    return ReplayResult(
        inputs=len(inputs),
        derived=sum(len(v) for v in expected.values()),
        divergence=_first_divergence(expected, actual, cut_short),
        envelopes=tuple(published),
    )


def _group(
    envelopes: Sequence[Envelope[Any]],
    is_input: IsInput,
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
            if is_input(current.event):
                found = recorded_seq(current.seq)
                break
            current = by_seq.get(current.causation) if current.causation is not None else None
        for seq in chain:
            roots[seq] = found
        return found

    groups: dict[Key, list[Envelope[Any]]] = defaultdict(list)
    for envelope in envelopes:
        if is_input(envelope.event) or envelope.source not in sources:
            continue
        groups[(root(envelope), envelope.source)].append(envelope)
    return groups


def _first_divergence(
    expected: dict[Key, list[Envelope[Any]]],
    actual: dict[Key, list[Envelope[Any]]],
    cut_short: int | None,
) -> Divergence | None:
    found: list[Divergence] = []
    for key in expected.keys() | actual.keys():
        want, got = expected.get(key, []), actual.get(key, [])
        length = max(len(want), len(got)) if key[0] != cut_short else len(want)
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

"""The runtime: a bus, supervised actors, an optional recorder, under one task group."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._bus import Bus, Tap
from ._clock import Clock, SystemClock
from ._envelope import Envelope
from ._exceptions import NotQuietError, SupervisorGaveUpError
from ._ids import IdSource, SeededIds, new_seed
from ._log import Recorder
from ._supervisor import ChildSpec, run_child


class Runtime:
    """A running system: publish inputs into it and wait for it to go quiet."""

    def __init__(self, bus: Bus, clock: Clock, ids: IdSource, task_group: TaskGroup) -> None:
        self.bus = bus
        self.clock = clock
        self.ids = ids
        self._task_group = task_group

    async def publish(
        self, event: object, *, source: str, causation: int | None = None
    ) -> Envelope[Any]:
        """Inject an event from outside the actors (a boundary: user, server, timer)."""
        return await self.bus.publish(event, source=source, causation=causation)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until no envelope is queued or being handled and no actor task is working.

        Raises:
            NotQuietError: still busy after `timeout` seconds of real time.
        """
        activity = self.bus.activity
        with anyio.move_on_after(timeout) as scope:
            while True:
                if activity.outstanding:
                    await activity.wait_quiet()
                elif self.clock.waking:
                    # Sleepers woken by a fake clock count as busy again once they run.
                    await anyio.lowlevel.checkpoint()
                else:
                    break
        if scope.cancelled_caught:
            raise NotQuietError(timeout, self.bus.activity.describe())

    def stop(self) -> None:
        """Cancel every actor; `open_runtime` returns once they have stopped."""
        self._task_group.cancel_scope.cancel()


@asynccontextmanager
async def open_runtime(
    specs: Sequence[ChildSpec],
    *,
    clock: Clock | None = None,
    ids: IdSource | None = None,
    recorder: Recorder | None = None,
    last_seq: int = 0,
    taps: Sequence[Tap] = (),
) -> AsyncIterator[Runtime]:
    """Start every actor (each subscribed before this returns) and stop them all on exit.

    `last_seq` continues a recorded run: the first publication gets `last_seq + 1`.

    Raises:
        SupervisorGaveUpError: an actor crashed past its restart intensity; every other
            actor was stopped.
    """
    clock = clock or SystemClock()
    ids = ids or SeededIds(new_seed())
    bus = Bus(clock, last_seq=last_seq)
    remove_tap = bus.add_tap(recorder.tap) if recorder is not None else None
    for tap in taps:
        bus.add_tap(tap)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"actor names must be unique: {names}")
    try:
        async with anyio.create_task_group() as tg:
            if recorder is not None:
                tg.start_soon(recorder.run, name="recorder")
            durable = recorder.durable if recorder is not None else None
            for spec in specs:
                await tg.start(run_child, spec, bus, clock, ids, durable, name=spec.name)
            runtime = Runtime(bus, clock, ids, tg)
            try:
                yield runtime
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One failure (an actor gave up, or the caller's own error) is raised as itself.
        leaves = _leaves(group)
        gave_up = [e for e in leaves if isinstance(e, SupervisorGaveUpError)]
        if gave_up:
            raise gave_up[0] from None
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise
    finally:
        if remove_tap is not None:
            remove_tap()
        if recorder is not None:
            recorder.flush()
        bus.close()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        elif not isinstance(exc, anyio.get_cancelled_exc_class()):
            out.append(exc)
    return out

"""One-for-one supervision: a crashed actor is replaced, within an intensity limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ._actor import Actor, Context, set_holder
from ._bus import Bus, set_causation
from ._clock import Clock
from ._envelope import Envelope
from ._events import ActorCrashed, ActorRestarted, Event, Lagged, SupervisorGaveUp
from ._exceptions import SupervisorGaveUpError
from ._ids import IdSource
from ._mailbox import Mailbox, Overflow


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    """How to run one actor under supervision."""

    name: str
    factory: Callable[[], Actor[Any]]
    """Makes a fresh actor: at start, and after every crash."""
    observer: bool = False
    """Observers (the UI) get a drop-oldest mailbox and `Lagged` notices; never block others."""
    capacity: int = 1024
    recorded_only: bool = False
    """Hand the actor an envelope only once the run's recorder has written it (a display
    then never shows what a crash could lose)."""
    max_restarts: int = 3
    """Crashes allowed within `within_s` seconds on the injected clock before giving up."""
    within_s: float = 5.0


def describe_error(exc: BaseException) -> str:
    """`Type: message` of the first leaf of a (possibly grouped) exception."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Crash(Exception):
    """Carries the event being handled when an actor crashed."""

    def __init__(
        self, error: BaseException, seq: int | None, kind: str, ctx: Context | None
    ) -> None:
        super().__init__(describe_error(error))
        self.error = error
        self.seq = seq
        self.kind = kind
        self.ctx = ctx


Durable = Callable[[int], Awaitable[None]]
"""Waits until the envelope of a `seq` (and all before it) has been recorded."""


async def run_child(
    spec: ChildSpec,
    bus: Bus,
    clock: Clock,
    ids: IdSource,
    durable: Durable | None = None,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run `spec`'s actor until cancelled, restarting it after crashes."""
    actor = spec.factory()
    mailbox = bus.subscribe(
        spec.name,
        actor.accepts,
        capacity=spec.capacity,
        overflow=Overflow.DROP_OLDEST if spec.observer else Overflow.BACKPRESSURE,
    )
    actor_ids = ids.scoped(spec.name)
    crashes: deque[float] = deque()
    ready = False
    try:
        while True:
            try:
                wait = durable if spec.recorded_only else None
                await _serve(
                    actor, spec.name, mailbox, bus, clock, actor_ids, task_status, ready, wait
                )
            except _Crash as crash:
                ready = True
                await _after_crash(spec, bus, clock, crashes, crash)
                actor = spec.factory()
                await bus.publish(
                    ActorRestarted(actor=spec.name, restarts=len(crashes)),
                    source=spec.name,
                    causation=crash.seq,
                )
                if crash.ctx is not None and crash.ctx.crashing:
                    bus.activity.end(crash.ctx.crash_holder)
    finally:
        bus.unsubscribe(mailbox)


async def _after_crash(
    spec: ChildSpec, bus: Bus, clock: Clock, crashes: deque[float], crash: _Crash
) -> None:
    error = describe_error(crash.error)
    await bus.publish(
        ActorCrashed(actor=spec.name, error=error, event_kind=crash.kind),
        source=spec.name,
        causation=crash.seq,
    )
    now = clock.now()
    crashes.append(now)
    while crashes and crashes[0] < now - spec.within_s:
        crashes.popleft()
    if len(crashes) > spec.max_restarts:
        await bus.publish(
            SupervisorGaveUp(
                actor=spec.name, crashes=len(crashes), window_s=spec.within_s, error=error
            ),
            source=spec.name,
            causation=crash.seq,
        )
        raise SupervisorGaveUpError(spec.name, len(crashes), spec.within_s, error) from crash.error


async def _serve(
    actor: Actor[Any],
    name: str,
    mailbox: Mailbox,
    bus: Bus,
    clock: Clock,
    ids: IdSource,
    task_status: TaskStatus[None],
    ready: bool,
    durable: Durable | None = None,
) -> None:
    """Start one actor instance and feed it its mailbox; a failure comes out as `_Crash`."""
    current: list[Envelope[Any] | Lagged | None] = [None]
    ctx: Context | None = None
    try:
        async with anyio.create_task_group() as tg:
            ctx = Context(name, bus, clock, ids, tg)
            try:
                try:
                    await actor.on_start(ctx)
                except Exception:
                    ctx.mark_crashing()
                    raise
                if not ready:
                    task_status.started()
                    ready = True
                await _receive_loop(actor, ctx, mailbox, current, durable)
            finally:
                if not ready:
                    # Let the runtime start even if this actor is still failing to start.
                    task_status.started()
                if _cancel_requested():
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await actor.on_stop(ctx)
    except Exception as exc:
        item = current[0]
        if isinstance(item, Envelope):
            raise _Crash(exc, item.seq, _kind(item.event), ctx) from exc
        raise _Crash(exc, None, "actors.lagged" if item is not None else "", ctx) from exc


def _cancel_requested() -> bool:
    """True when the current task is being cancelled: a shutdown, not a crash."""
    return anyio.current_effective_deadline() == float("-inf")


async def _receive_loop(
    actor: Actor[Any],
    ctx: Context,
    mailbox: Mailbox,
    current: list[Envelope[Any] | Lagged | None],
    durable: Durable | None = None,
) -> None:
    set_holder(mailbox.name)
    while True:
        item = await mailbox.get()
        current[0] = item
        if type(item) is Lagged:
            await actor.handle(item, ctx)
            continue
        assert isinstance(item, Envelope)
        if durable is not None:
            await durable(item.seq)
        ctx.current = item
        set_causation(item.seq)
        try:
            await actor.handle(item.event, ctx)
        except Exception:
            ctx.mark_crashing()
            raise
        finally:
            set_causation(None)
            ctx.current = None
            mailbox.done()


def _kind(event: object) -> str:
    if isinstance(event, Event):
        tag = event.__struct_config__.tag
        return tag if isinstance(tag, str) else type(event).__name__
    return type(event).__name__

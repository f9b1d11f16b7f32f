"""The actor base class and the context an actor works through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, ClassVar, Generic, TypeVar, TypeVarTuple, Unpack

from anyio.abc import TaskGroup

from ._bus import Bus
from ._clock import Clock
from ._envelope import Envelope
from ._ids import IdSource

E = TypeVar("E")
PosArgs = TypeVarTuple("PosArgs")

# Which activity holder the current task counts as, so that a sleep on the clock can release it.
_holder: ContextVar[str | None] = ContextVar("actors_holder", default=None)


def set_holder(name: str) -> None:
    """The current task's work counts as `name`'s (released while it sleeps on the clock)."""
    _holder.set(name)


class Context:
    """What an actor may touch: publish, the injected clock and ids, its own background tasks."""

    def __init__(
        self, name: str, bus: Bus, clock: Clock, ids: IdSource, task_group: TaskGroup
    ) -> None:
        self.name = name
        self.clock = clock
        self.ids = ids
        self._bus = bus
        self._task_group = task_group
        self.current: Envelope[Any] | None = None
        """The envelope being handled, if any."""
        self.crashing = False

    def mark_crashing(self) -> None:
        """Keep the runtime busy from the moment of a failure until the supervisor has acted."""
        if not self.crashing:
            self.crashing = True
            self._bus.activity.begin(self.crash_holder)

    @property
    def crash_holder(self) -> str:
        return f"{self.name} (restarting)"

    async def publish(self, event: object, *, causation: int | None = None) -> Envelope[Any]:
        """Publish `event` as this actor; its cause is the envelope being handled, unless
        `causation` names another one (a request held back and answered later is caused by
        the envelope that asked, not by whatever happens to be handled when it goes out)."""
        return await self._bus.publish(event, source=self.name, causation=causation)

    def publish_nowait(self, event: object) -> Envelope[Any]:
        """Publish without waiting (raises `anyio.WouldBlock` if a core mailbox is full)."""
        return self._bus.publish_nowait(event, source=self.name)

    def now(self) -> float:
        """The time of the envelope being handled, else the clock's.

        Values that end up in events should come from here: a replay sets the clock to each
        input's recorded time, so it derives the same values.
        """
        return self.current.at if self.current is not None else self.clock.now()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the injected clock; while waiting, this task does not keep the runtime busy."""
        holder = _holder.get()
        if holder is not None:
            self._bus.activity.end(holder)
        try:
            await self.clock.sleep(seconds)
        finally:
            if holder is not None:
                self._bus.activity.begin(holder)

    def start_soon(self, fn: Callable[[Unpack[PosArgs]], Awaitable[Any]], *args: *PosArgs) -> None:
        """Run `fn(*args)` in the background, owned by this actor.

        It is cancelled when the actor stops or restarts; if it raises, the actor crashed.
        Its publications name the envelope being handled now as their cause.
        """
        holder = f"{self.name} (task)"
        activity = self._bus.activity
        activity.begin(holder)

        async def run() -> None:
            set_holder(holder)
            try:
                await fn(*args)
            except Exception:
                self.mark_crashing()
                raise
            finally:
                activity.end(holder)

        self._task_group.start_soon(run, name=f"{self.name}: {getattr(fn, '__name__', 'task')}")


class Actor(Generic[E]):
    """Base of every actor: override `handle`, and `on_start`/`on_stop` when needed.

    `accepts` lists the event types the actor's mailbox subscribes to.
    """

    accepts: ClassVar[tuple[type, ...]] = ()

    async def on_start(self, ctx: Context) -> None:
        """Called before the first event, and again on a fresh instance after a restart."""

    async def handle(self, event: E, ctx: Context) -> None:
        """Handle one event. Raising crashes this actor; the supervisor restarts it."""
        raise NotImplementedError

    async def on_stop(self, ctx: Context) -> None:
        """Called when the runtime shuts down (not after a crash)."""

"""The base of every message, and the runtime's own lifecycle events.

Every message on a bus is a frozen, keyword-only `msgspec.Struct` tagged in the field
`kind` with an explicit dotted tag. Applications subclass `Event`; the runtime's events use
the reserved prefix `actors.` so both kinds share one tagged union in a log.
"""

from __future__ import annotations

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of every message. Subclasses set an explicit `tag="area.name"`."""


class Input(Event, frozen=True, kw_only=True):
    """Base of the events that carry the outside world in (user input, replies, samples, ticks).

    Replay re-publishes these from a log and derives everything else again.
    """


class ActorCrashed(Event, frozen=True, kw_only=True, tag="actors.crashed"):
    """An actor raised while starting or handling an event."""

    actor: str
    error: str
    """The exception's type and message, e.g. `ValueError: bad size`."""
    event_kind: str = ""
    """The tag of the event being handled, empty when it crashed while starting."""


class ActorRestarted(Event, frozen=True, kw_only=True, tag="actors.restarted"):
    """A crashed actor was replaced by a fresh instance; it goes on with the next event."""

    actor: str
    restarts: int
    """Restarts within the current intensity window, this one included."""


class SupervisorGaveUp(Event, frozen=True, kw_only=True, tag="actors.gave_up"):
    """An actor crashed more often than its restart intensity allows; the runtime stops."""

    actor: str
    crashes: int
    window_s: float
    error: str


class Lagged(Event, frozen=True, kw_only=True, tag="actors.lagged"):
    """Delivered to an observer (not published) when its mailbox dropped events to keep up."""

    dropped: int


RuntimeEvent = ActorCrashed | ActorRestarted | SupervisorGaveUp | Lagged
"""Every event the runtime itself publishes or delivers."""

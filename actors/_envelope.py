"""The envelope the bus stamps around every published event."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

E = TypeVar("E")


class Envelope(msgspec.Struct, Generic[E], frozen=True, kw_only=True):
    """Metadata stamped by the bus; the event itself stays a pure domain fact."""

    seq: int
    """Position in the run's total order of publication, from 1."""
    at: float
    """The injected clock's time at publication."""
    source: str
    """The publishing actor's name, or the boundary that injected the event."""
    causation: int | None
    """`seq` of the envelope being handled when this one was published; None for an input."""
    event: E

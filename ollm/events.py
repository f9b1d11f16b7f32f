"""Every domain event: frozen, keyword-only msgspec Structs with an explicit dotted tag.

Facts are past tense (`UsageChanged`); requests are imperative (`CompressRequested`).
Inputs (subclasses of `actors.Input`) carry the outside world in; replay re-publishes them
and checks that everything else is derived again. Rules for change: new fields get
defaults; a tag is never reused. `docs/events.md` is generated from `AnyEvent`
(`python scripts/gen_event_catalog.py`).
"""

from __future__ import annotations

from typing import Literal

from actors import Event, Input, RuntimeEvent

Role = Literal["system", "user", "assistant", "tool"]
CompressReason = Literal["auto", "user", "emergency"]
SnapshotReason = Literal["manual", "auto", "pre-compression", "emergency"]

# --- inputs -------------------------------------------------------------------------------


class UserSubmitted(Input, frozen=True, kw_only=True, tag="user.submitted"):
    """The user sent a chat message."""

    text: str


class MemorySampled(Input, frozen=True, kw_only=True, tag="memory.sampled"):
    """A reading of one memory device (a GPU, or the host when there is none)."""

    device: str
    """e.g. `nvidia:0`, `host`."""
    total_bytes: int
    free_bytes: int
    source: str = ""
    """What produced the figure, e.g. `nvml`, `nvidia-smi`, `psutil`."""


# --- conversation and usage -----------------------------------------------------------------


class MessageAdded(Event, frozen=True, kw_only=True, tag="message.added"):
    """A message joined the conversation."""

    message_id: str
    role: Role
    content: str


class UsageChanged(Event, frozen=True, kw_only=True, tag="usage.changed"):
    """The conversation's size in tokens, against the context sent to Ollama (`num_ctx`)."""

    used_tokens: int
    limit_tokens: int


# --- thresholds and requests ----------------------------------------------------------------


class _LimitReached(Event, frozen=True, kw_only=True):
    """Usage reached `threshold`, a fraction of `limit_tokens` (the `num_ctx` sent)."""

    used_tokens: int
    limit_tokens: int
    threshold: float


class SoftLimitHit(_LimitReached, frozen=True, kw_only=True, tag="limit.soft_hit"):
    """Usage reached the compression threshold."""


class CompressRequested(Event, frozen=True, kw_only=True, tag="compress.requested"):
    """Someone asks for the conversation to be compressed."""

    reason: CompressReason


class SnapshotRequested(Event, frozen=True, kw_only=True, tag="snapshot.requested"):
    """Someone asks for a snapshot of the conversation."""

    reason: SnapshotReason


class HardLimitHit(_LimitReached, frozen=True, kw_only=True, tag="limit.hard_hit"):
    """Usage reached the hard limit: the context must be reduced before the next request."""


class CriticalLimitHit(_LimitReached, frozen=True, kw_only=True, tag="limit.critical_hit"):
    """Usage reached the critical limit: emergency snapshot, then clear."""


class LowMemory(Event, frozen=True, kw_only=True, tag="memory.low"):
    """A device's free memory fell below the low-memory threshold."""

    device: str
    free_bytes: int
    threshold_bytes: int


class MemoryRecovered(Event, frozen=True, kw_only=True, tag="memory.recovered"):
    """A device's free memory rose back above the recovery threshold."""

    device: str
    free_bytes: int
    threshold_bytes: int


DomainEvent = (
    UserSubmitted
    | MemorySampled
    | MessageAdded
    | UsageChanged
    | SoftLimitHit
    | CompressRequested
    | SnapshotRequested
    | HardLimitHit
    | CriticalLimitHit
    | LowMemory
    | MemoryRecovered
)
"""Every event ollm itself defines."""

AnyEvent = DomainEvent | RuntimeEvent
"""Everything a session's event log may hold."""


def is_input(event: object) -> bool:
    """Whether `event` carries the outside world in (replay re-publishes these)."""
    return isinstance(event, Input)

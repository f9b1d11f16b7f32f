"""The memory guard: acts when usage crosses a threshold or a device runs low on memory.

Thresholds are fractions of the context actually sent to Ollama (`num_ctx`); a threshold
of 0.75 at `num_ctx` 3482 is reached at floor(0.75 × 3482) = 2611 tokens. Each crossing
fires once on the way up, in order, and re-arms only when usage falls back below it:

- compression threshold → `SoftLimitHit`, `CompressRequested(auto)`
- snapshot threshold → `SnapshotRequested(auto)`
- hard limit → `HardLimitHit` (the session truncates before the next request)
- critical → `CriticalLimitHit`, `CompressRequested(emergency)`: the compressor saves a
  snapshot and truncates at once (it overrides a summary in progress); restoring the
  snapshot undoes it
- `LowMemory` → `ResizeRequested` (the next context is smaller); `MemoryRecovered` told.

Every intervention is also a `UserNotified` sentence. The same policy decides, just before
a request goes out, whether it is sent as it is, sent after the oldest turns are taken out
(at the hard limit), or refused (the newest message cannot fit at all): `before_send`, which
the session calls on every send and `/test prompt` calls to show the next request.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import get_args

from actors import Actor, Context, Event

from ..config import ContextSettings
from ..conversation import Conversation, Folded, oldest_turns_to_drop
from ..events import (
    CompressRequested,
    CriticalLimitHit,
    HardLimitHit,
    LowMemory,
    MemoryRecovered,
    MemorySampled,
    NoticeLevel,
    ResizeRequested,
    SessionOpened,
    SnapshotRequested,
    SoftLimitHit,
    UsageChanged,
    UserNotified,
)
from ..memory import MiB, format_bytes


def threshold_tokens(fraction: float, limit: int) -> int:
    """The token count at which `fraction` of `limit` is reached (no float-equality traps)."""
    return math.floor(fraction * limit + 1e-9)


class Level(enum.IntEnum):
    NORMAL = 0
    SOFT = 1
    SNAPSHOT = 2
    HARD = 3
    CRITICAL = 4


_DEFAULT = ContextSettings()
"""The configuration's defaults are the policy's: one home for each threshold."""


@dataclass(frozen=True)
class GuardPolicy:
    compress_at: float = _DEFAULT.compression.threshold
    snapshot_at: float = _DEFAULT.snapshots.auto_threshold
    hard_at: float = _DEFAULT.guard.hard_limit
    critical_at: float = _DEFAULT.guard.critical
    compression_enabled: bool = _DEFAULT.compression.enabled
    auto_snapshot: bool = _DEFAULT.snapshots.enabled and _DEFAULT.snapshots.auto_create
    low_memory_bytes: int = _DEFAULT.guard.low_memory_mb * MiB
    recover_memory_bytes: int = _DEFAULT.guard.recover_memory_mb * MiB

    @classmethod
    def from_settings(cls, context: ContextSettings) -> GuardPolicy:
        return cls(
            compress_at=context.compression.threshold,
            snapshot_at=context.snapshots.auto_threshold,
            hard_at=context.guard.hard_limit,
            critical_at=context.guard.critical,
            compression_enabled=context.compression.enabled,
            auto_snapshot=context.snapshots.enabled and context.snapshots.auto_create,
            low_memory_bytes=context.guard.low_memory_mb * MiB,
            recover_memory_bytes=context.guard.recover_memory_mb * MiB,
        )

    def level(self, used: int, limit: int) -> Level:
        for level, fraction in (
            (Level.CRITICAL, self.critical_at),
            (Level.HARD, self.hard_at),
            (Level.SNAPSHOT, self.snapshot_at),
            (Level.SOFT, self.compress_at),
        ):
            if used >= threshold_tokens(fraction, limit):
                return level
        return Level.NORMAL

    def safe_limit(self, limit: int) -> int:
        """The most tokens a prompt may hold before the hard limit acts."""
        return threshold_tokens(self.hard_at, limit) - 1

    def can_allocate(self, used: int, tokens: int, limit: int) -> bool:
        """Whether `tokens` more fit without reaching the hard limit."""
        return used + tokens <= self.safe_limit(limit)

    def crossings(self, before: Level, usage: UsageChanged) -> list[Event]:
        """The events for every level passed on the way up from `before`, in order."""
        used, limit = usage.used_tokens, usage.limit_tokens
        now = self.level(used, limit)
        share = f"{used} of {limit} tokens"
        out: list[Event] = []
        for level in range(before + 1, now + 1):
            if level == Level.SOFT:
                out.append(
                    SoftLimitHit(used_tokens=used, limit_tokens=limit, threshold=self.compress_at)
                )
                if self.compression_enabled:
                    out.append(CompressRequested(reason="auto"))
                out.append(_note("info", f"the context is {self._pct(used, limit)} full ({share})"))
            elif level == Level.SNAPSHOT and self.auto_snapshot:
                out.append(SnapshotRequested(reason="auto"))
            elif level == Level.HARD:
                out.append(
                    HardLimitHit(used_tokens=used, limit_tokens=limit, threshold=self.hard_at)
                )
            elif level == Level.CRITICAL:
                out.append(
                    CriticalLimitHit(
                        used_tokens=used, limit_tokens=limit, threshold=self.critical_at
                    )
                )
                out.append(CompressRequested(reason="emergency"))
                out.append(
                    _note(
                        "warning",
                        f"the context is {self._pct(used, limit)} full ({share}): an emergency "
                        "compression follows (a snapshot first, so it can be undone)",
                    )
                )
        return out

    @staticmethod
    def _pct(used: int, limit: int) -> str:
        return f"{round(100 * used / max(limit, 1))}%"


@dataclass(frozen=True)
class Send:
    """Send the request as the conversation stands."""


@dataclass(frozen=True)
class DropFirst:
    """The hard limit is reached: take the oldest whole turns out, then send."""

    removed_ids: tuple[str, ...]


@dataclass(frozen=True)
class Refuse:
    """The newest message cannot fit even with everything older set aside."""

    newest_tokens: int


SendDecision = Send | DropFirst | Refuse


def refused_tokens(policy: GuardPolicy, usage: UsageChanged, num_ctx: int) -> int:
    """The one refusal rule: the newest turn's tokens when, with what every request carries,
    it cannot fit even alone, else 0 (both as the token counter counts them)."""
    newest, base = usage.newest_tokens, usage.base_tokens
    return newest if newest + base > policy.safe_limit(num_ctx) else 0


def awaits_refusal(
    policy: GuardPolicy, conversation: Conversation, usage: UsageChanged, num_ctx: int
) -> bool:
    """Whether `usage` counts a new message that the session will refuse and take out (the
    newest message is the user's, and cannot fit): a figure about to be withdrawn, which the
    thresholds must not act on."""
    messages = conversation.messages
    return bool(messages and messages[-1].role == "user" and refused_tokens(policy, usage, num_ctx))


def before_send(
    policy: GuardPolicy,
    conversation: Conversation,
    usage: UsageChanged,
    num_ctx: int,
    *,
    reduced: bool,
) -> SendDecision:
    """What to do with the request about to go out for `conversation`, counted at `usage`.

    `reduced`: the oldest turns were already taken out for this request (they go once,
    unless what is left still does not fit the context at all: Ollama would refuse it).
    """
    newest = refused_tokens(policy, usage, num_ctx)
    if newest:
        return Refuse(newest_tokens=newest)
    used = usage.used_tokens
    if (not reduced or used >= num_ctx) and policy.level(used, num_ctx) >= Level.HARD:
        target = threshold_tokens(policy.compress_at, num_ctx)
        share = (used - target) / used if used else 0.0
        removed = oldest_turns_to_drop(conversation.messages, share)
        if removed:
            return DropFirst(removed_ids=removed)
    return Send()


def _note(level: NoticeLevel, text: str) -> UserNotified:
    return UserNotified(level=level, text=text)


@dataclass
class GuardState:
    level: Level = Level.NORMAL
    low_devices: set[str] = field(default_factory=set)


def on_usage(
    policy: GuardPolicy,
    state: GuardState,
    usage: UsageChanged,
    conversation: Conversation | None = None,
) -> list[Event]:
    """The crossings `usage` makes; `conversation`, where given, is what it counts."""
    if conversation is not None and awaits_refusal(policy, conversation, usage, usage.limit_tokens):
        return []  # the session refuses the message; the next figure is the real one
    events = policy.crossings(state.level, usage)
    state.level = policy.level(usage.used_tokens, usage.limit_tokens)
    return events


def on_memory(policy: GuardPolicy, state: GuardState, sample: MemorySampled) -> list[Event]:
    device, free = sample.device, sample.free_bytes
    shown = format_bytes(free)
    if device not in state.low_devices and free < policy.low_memory_bytes:
        state.low_devices.add(device)
        return [
            LowMemory(device=device, free_bytes=free, threshold_bytes=policy.low_memory_bytes),
            ResizeRequested(reason=f"low memory on {device} ({shown} free)"),
            _note(
                "warning",
                f"memory is low on {device} ({shown} free): the next request uses a smaller "
                "context",
            ),
        ]
    if device in state.low_devices and free >= policy.recover_memory_bytes:
        state.low_devices.discard(device)
        return [
            MemoryRecovered(
                device=device, free_bytes=free, threshold_bytes=policy.recover_memory_bytes
            ),
            _note("info", f"memory recovered on {device} ({shown} free)"),
        ]
    return []


Followed = UsageChanged | MemorySampled | Folded


class MemoryGuardActor(Actor[Followed]):
    accepts = (UsageChanged, MemorySampled, *get_args(Folded))

    def __init__(self, policy: GuardPolicy) -> None:
        self.policy = policy
        self.state = GuardState()
        self.conversation = Conversation()
        """Followed for the one refusal rule (`awaits_refusal`)."""

    async def handle(self, event: Followed, ctx: Context) -> None:
        if isinstance(event, SessionOpened):
            self.state = GuardState()  # a (re)opened session starts fresh
            self.conversation = Conversation()
            self.conversation.apply(event)
            return
        if isinstance(event, UsageChanged):
            out = on_usage(self.policy, self.state, event, self.conversation)
        elif isinstance(event, MemorySampled):
            out = on_memory(self.policy, self.state, event)
        else:
            self.conversation.apply(event)
            return
        for item in out:
            await ctx.publish(item)

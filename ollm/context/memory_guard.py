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

Every intervention is also a `UserNotified` sentence.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from actors import Actor, Context, Event

from ..config import ContextSettings
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
from ..memory import MiB


def threshold_tokens(fraction: float, limit: int) -> int:
    """The token count at which `fraction` of `limit` is reached (no float-equality traps)."""
    return math.floor(fraction * limit + 1e-9)


class Level(enum.IntEnum):
    NORMAL = 0
    SOFT = 1
    SNAPSHOT = 2
    HARD = 3
    CRITICAL = 4


@dataclass(frozen=True)
class GuardPolicy:
    compress_at: float = 0.75
    snapshot_at: float = 0.80
    hard_at: float = 0.90
    critical_at: float = 0.95
    compression_enabled: bool = True
    auto_snapshot: bool = True
    low_memory_bytes: int = 512 * MiB
    recover_memory_bytes: int = 1024 * MiB

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


def _note(level: NoticeLevel, text: str) -> UserNotified:
    return UserNotified(level=level, text=text)


@dataclass
class GuardState:
    level: Level = Level.NORMAL
    low_devices: set[str] = field(default_factory=set)


def on_usage(policy: GuardPolicy, state: GuardState, usage: UsageChanged) -> list[Event]:
    events = policy.crossings(state.level, usage)
    state.level = policy.level(usage.used_tokens, usage.limit_tokens)
    return events


def on_memory(policy: GuardPolicy, state: GuardState, sample: MemorySampled) -> list[Event]:
    device, free = sample.device, sample.free_bytes
    mib = free // MiB
    if device not in state.low_devices and free < policy.low_memory_bytes:
        state.low_devices.add(device)
        return [
            LowMemory(device=device, free_bytes=free, threshold_bytes=policy.low_memory_bytes),
            ResizeRequested(reason=f"low memory on {device} ({mib} MiB free)"),
            _note(
                "warning",
                f"memory is low on {device} ({mib} MiB free): the next request uses a smaller "
                "context",
            ),
        ]
    if device in state.low_devices and free >= policy.recover_memory_bytes:
        state.low_devices.discard(device)
        return [
            MemoryRecovered(
                device=device, free_bytes=free, threshold_bytes=policy.recover_memory_bytes
            ),
            _note("info", f"memory recovered on {device} ({mib} MiB free)"),
        ]
    return []


class MemoryGuardActor(Actor[UsageChanged | MemorySampled | SessionOpened]):
    accepts = (UsageChanged, MemorySampled, SessionOpened)

    def __init__(self, policy: GuardPolicy) -> None:
        self.policy = policy
        self.state = GuardState()

    async def handle(
        self, event: UsageChanged | MemorySampled | SessionOpened, ctx: Context
    ) -> None:
        if isinstance(event, SessionOpened):
            self.state = GuardState()  # a (re)opened session starts fresh
            return
        if isinstance(event, UsageChanged):
            out = on_usage(self.policy, self.state, event)
        else:
            out = on_memory(self.policy, self.state, event)
        for item in out:
            await ctx.publish(item)

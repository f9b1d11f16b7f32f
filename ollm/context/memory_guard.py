"""The memory guard: acts when usage crosses a threshold or a device runs low on memory.

Thresholds are fractions of the context actually sent to Ollama (`num_ctx`); a threshold
of 0.75 at `num_ctx` 3482 is reached at floor(0.75 × 3482) = 2611 tokens. Each crossing
fires once on the way up and re-arms only when usage falls back below it.
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
    SessionOpened,
    SnapshotRequested,
    SoftLimitHit,
    UsageChanged,
)

MB = 1024 * 1024


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
    low_memory_bytes: int = 512 * MB
    recover_memory_bytes: int = 1024 * MB

    @classmethod
    def from_settings(cls, context: ContextSettings) -> GuardPolicy:
        return cls(
            compress_at=context.compression.threshold,
            snapshot_at=context.snapshots.auto_threshold,
            hard_at=context.guard.hard_limit,
            critical_at=context.guard.critical,
            compression_enabled=context.compression.enabled,
            auto_snapshot=context.snapshots.enabled and context.snapshots.auto_create,
            low_memory_bytes=context.guard.low_memory_mb * MB,
            recover_memory_bytes=context.guard.recover_memory_mb * MB,
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

    def crossings(self, before: Level, usage: UsageChanged) -> list[Event]:
        """The events for every level passed on the way up from `before`."""
        used, limit = usage.used_tokens, usage.limit_tokens
        now = self.level(used, limit)
        out: list[Event] = []
        for level in range(before + 1, now + 1):
            if level == Level.SOFT:
                out.append(
                    SoftLimitHit(used_tokens=used, limit_tokens=limit, threshold=self.compress_at)
                )
                if self.compression_enabled:
                    out.append(CompressRequested(reason="auto"))
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
        return out


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
    if device not in state.low_devices and free < policy.low_memory_bytes:
        state.low_devices.add(device)
        return [LowMemory(device=device, free_bytes=free, threshold_bytes=policy.low_memory_bytes)]
    if device in state.low_devices and free >= policy.recover_memory_bytes:
        state.low_devices.discard(device)
        return [
            MemoryRecovered(
                device=device, free_bytes=free, threshold_bytes=policy.recover_memory_bytes
            )
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

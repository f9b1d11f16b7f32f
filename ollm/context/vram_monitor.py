"""The VRAM monitor: samples memory every 5 s while a reply is generating, every 30 s idle.

A boundary actor: it reads the probes (in a worker thread) and `/api/ps`, and publishes what
it saw as inputs. `MemorySampled` goes out when a device's free memory moved by more than a
small tolerance; `MemorySourceChanged` whenever the source in use changes (a probe failed, so
the next one is used, and why). When Ollama runs on another machine the local GPU is not the
one that matters: the monitor says so and relies on `/api/ps` alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

from actors import Actor, Context

from ..config import GuardSettings
from ..events import (
    ChatRequested,
    MemorySampled,
    MemorySourceChanged,
    ModelMemory,
    ReplyCancelled,
    ReplyCompleted,
    ReplyFailed,
)
from ..gpu.records import MemorySource, Reading
from ..memory import MiB
from ..providers.ollama import ProviderError, PsModel

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}


def is_local(host: str) -> bool:
    name = urlsplit(host).hostname or ""
    return name in LOCAL_HOSTS or name.startswith("127.")


@dataclass(frozen=True)
class MonitorPolicy:
    busy_interval: float = GuardSettings().poll_busy_seconds
    idle_interval: float = GuardSettings().poll_idle_seconds
    tolerance_bytes: int = 64 * MiB

    @classmethod
    def from_settings(cls, guard: GuardSettings) -> MonitorPolicy:
        return cls(busy_interval=guard.poll_busy_seconds, idle_interval=guard.poll_idle_seconds)


def moved(last: MemorySampled | None, now: MemorySampled, tolerance: int) -> bool:
    """Whether a sample is worth publishing: new, or free memory moved beyond the tolerance."""
    return (
        last is None
        or abs(last.free_bytes - now.free_bytes) > tolerance
        or last.total_bytes != now.total_bytes
    )


Watched = ChatRequested | ReplyCompleted | ReplyFailed | ReplyCancelled


class VramMonitorActor(Actor[Watched]):
    accepts = (ChatRequested, ReplyCompleted, ReplyFailed, ReplyCancelled)

    def __init__(
        self,
        chain: MemorySource,
        *,
        host: str,
        ps: Callable[[], Awaitable[list[PsModel]]] | None = None,
        policy: MonitorPolicy | None = None,
    ) -> None:
        self.chain = chain
        self.host = host
        self.ps = ps
        self.policy = policy or MonitorPolicy()
        self.generating: set[str] = set()
        self.last: dict[str, MemorySampled] = {}
        self.source = ""
        self.models: dict[str, tuple[int, int, int]] = {}

    async def on_start(self, ctx: Context) -> None:
        ctx.start_soon(self._poll, ctx)

    async def handle(self, event: Watched, ctx: Context) -> None:
        if isinstance(event, ChatRequested):
            self.generating.add(event.request_id)
        else:
            self.generating.discard(event.request_id)

    async def _poll(self, ctx: Context) -> None:
        # Tick at the busy interval; sample on every tick while a reply is generating, else
        # once the idle interval has passed (so a reply starting mid-wait is sampled soon).
        await self.sample(ctx)
        waited = 0.0
        while True:
            await ctx.sleep(self.policy.busy_interval)
            waited += self.policy.busy_interval
            if self.generating or waited >= self.policy.idle_interval:
                await self.sample(ctx)
                waited = 0.0

    async def sample(self, ctx: Context) -> None:
        if is_local(self.host):
            reading = await anyio.to_thread.run_sync(self.chain.read)
            await self._publish_reading(ctx, reading)
        elif self.source != "ollama":
            self.source = "ollama"
            await ctx.publish(
                MemorySourceChanged(
                    source="ollama",
                    detail=f"Ollama runs at {self.host}, not on this machine: context sizing "
                    "uses only what Ollama reports (/api/ps), not this machine's GPU",
                )
            )
        await self._publish_models(ctx)

    async def _publish_reading(self, ctx: Context, reading: Reading) -> None:
        if reading.source != self.source:
            self.source = reading.source
            await ctx.publish(MemorySourceChanged(source=reading.source, detail=reading.describe()))
        for device in reading.devices:
            sample = MemorySampled(
                device=device.device,
                total_bytes=device.total_bytes,
                free_bytes=device.free_bytes,
                source=reading.source,
            )
            if moved(self.last.get(sample.device), sample, self.policy.tolerance_bytes):
                self.last[sample.device] = sample
                await ctx.publish(sample)

    async def _publish_models(self, ctx: Context) -> None:
        if self.ps is None:
            return
        try:
            running = await self.ps()
        except ProviderError:
            return
        for model in running:
            figures = (model.size, model.size_vram, model.context_length)
            name = model.name or model.model
            if self.models.get(name) != figures:
                self.models[name] = figures
                await ctx.publish(
                    ModelMemory(
                        model=name,
                        context_length=model.context_length,
                        size_bytes=model.size,
                        size_vram_bytes=model.size_vram,
                    )
                )

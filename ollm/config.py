"""Typed settings. Keys are camelCase in YAML, snake_case in code.

Loading (YAML file < `OLLM_*` environment < command-line flags) arrives with the provider
work; for now the defaults below are what every run uses.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from blake3 import blake3

KvType = Literal["f16", "q8_0", "q4_0"]
Strategy = Literal["summarize", "truncate", "hybrid"]


class _Section(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    pass


class CompressionSettings(_Section, frozen=True, kw_only=True):
    enabled: bool = True
    threshold: float = 0.75
    strategy: Strategy = "hybrid"
    preserve_recent: int = 4096
    summary_max_tokens: int = 1024


class SnapshotSettings(_Section, frozen=True, kw_only=True):
    enabled: bool = True
    max_count: int = 5
    auto_create: bool = True
    auto_threshold: float = 0.80


class GuardSettings(_Section, frozen=True, kw_only=True):
    hard_limit: float = 0.90
    critical: float = 0.95
    low_memory_mb: int = 512
    """Free memory below this on any device is `LowMemory`."""
    recover_memory_mb: int = 1024
    """…and above this again is `MemoryRecovered` (the gap keeps the events from flapping)."""


class ContextSettings(_Section, frozen=True, kw_only=True):
    target_size: int = 16384
    min_size: int = 2048
    max_size: int = 0
    auto_size: bool = True
    vram_buffer: int = 512
    kv_quantization: KvType = "q8_0"
    compression: CompressionSettings = CompressionSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    guard: GuardSettings = GuardSettings()


class Settings(_Section, frozen=True, kw_only=True):
    context: ContextSettings = ContextSettings()


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    return msgspec.to_builtins(settings)  # type: ignore[no-any-return]


def settings_from_dict(data: dict[str, Any]) -> Settings:
    return msgspec.convert(data, Settings)


def digest(data: dict[str, Any]) -> str:
    """A stable short digest of a configuration (key order does not matter)."""
    canonical = msgspec.json.encode(data, order="sorted")
    return blake3(canonical).hexdigest(length=8)

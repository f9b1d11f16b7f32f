"""What the REPL shows, kept from the bus: a read model fed by a synchronous tap, so it
sees every event in order and never lags (pure: no I/O). It folds the conversation and its
token count with the token counter's own `Ledger`, so its figures are the counter's."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from msgspec.structs import replace

from actors import Envelope

from ..context.token_counter import Ledger
from ..events import (
    ChatRequested,
    CompressionCompleted,
    CompressionFailed,
    CompressionStarted,
    ContextSizeChosen,
    KvTypeLearned,
    MemorySampled,
    MemorySourceChanged,
    ModelLoaded,
    ModelLoadFailed,
    ModelMemory,
    ModelSelected,
    ServerInfo,
    SnapshotCreated,
    SnapshotsDeleted,
    UsageChanged,
    VocabularyLoaded,
    VocabularyUnavailable,
)
from ..gpu.records import filling_first
from ..memory import ollama_kv_bytes, usable_cache_type


@dataclass
class Status:
    compress_at: float = 0.75
    compression_enabled: bool = True
    ledger: Ledger = field(default_factory=Ledger)
    selected: ModelSelected | None = None
    chosen: ContextSizeChosen | None = None
    used: int = 0
    limit: int = 0
    usage_per_turn: deque[int] = field(default_factory=lambda: deque(maxlen=60))
    devices: dict[str, MemorySampled] = field(default_factory=dict)
    memory_source: str = ""
    model_size: int = 0
    model_vram: int = 0
    loaded_context: int = 0
    snapshot_ids: list[str] = field(default_factory=list)
    """The session's snapshots, newest last (from the listing at start, then the events)."""
    compressing_since: float | None = None
    compressions: list[CompressionCompleted | CompressionFailed] = field(default_factory=list)
    server_version: str = ""
    last_chat: ChatRequested | None = None
    warming: bool = False
    """A size was chosen and the model is loading with it (the toolbar says so)."""
    vocabulary_unavailable: str = ""
    """Why the model's own tokenizer cannot be had ("" when it can, or is not known yet)."""
    reading_vocabulary: bool = False
    """The model's vocabulary is being fetched or read (nothing is sent until it is)."""

    def apply(self, envelope: Envelope[Any]) -> None:
        event = envelope.event
        self.ledger.apply(event)
        match event:
            case ModelSelected():
                self.selected, self.vocabulary_unavailable = event, ""
                self.reading_vocabulary = event.vocabulary
            case VocabularyUnavailable(model=model, reason=reason) if (
                self.selected is not None and self.selected.model == model
            ):
                self.vocabulary_unavailable, self.reading_vocabulary = reason, False
            case VocabularyLoaded(model=model) if (
                self.selected is not None and self.selected.model == model
            ):
                self.reading_vocabulary = False
            case ContextSizeChosen():
                self.chosen, self.warming = event, True
            case KvTypeLearned() if self.selected and self.selected.model == event.model:
                self.selected = replace(
                    self.selected, kv_cache_type=event.kv_cache_type, kv_source=event.source
                )
            case UsageChanged(used_tokens=used, limit_tokens=limit):
                self.used, self.limit = used, limit
            case ChatRequested(purpose="chat"):
                self.last_chat = event
                self.usage_per_turn.append(self.used)
            case MemorySampled():
                self.devices[event.device] = event
            case MemorySourceChanged(source=source):
                self.memory_source = source
            case ModelLoadFailed():
                self.warming = False
            case ModelLoaded() | ModelMemory():
                self.warming = self.warming and isinstance(event, ModelMemory)
                self.model_size, self.model_vram = event.size_bytes, event.size_vram_bytes
                self.loaded_context = event.context_length
            case SnapshotCreated(snapshot_id=snapshot_id, pruned=pruned):
                self._forget(pruned)
                self.snapshot_ids.append(snapshot_id)
            case SnapshotsDeleted(snapshot_ids=ids):
                self._forget(ids)
            case CompressionStarted():
                self.compressing_since = envelope.at
            case CompressionCompleted() | CompressionFailed():
                self.compressing_since = None
                self.compressions.append(event)
            case ServerInfo(version=version):
                self.server_version = version
            case _:
                pass

    def _forget(self, ids: tuple[str, ...]) -> None:
        gone = set(ids)
        self.snapshot_ids = [i for i in self.snapshot_ids if i not in gone]

    @property
    def snapshots(self) -> int:
        """How many snapshots the session has."""
        return len(self.snapshot_ids)

    @property
    def model(self) -> str:
        return self.selected.model if self.selected else "(none)"

    @property
    def kv_type(self) -> str:
        return self.selected.kv_cache_type if self.selected else "f16"

    @property
    def kv_source(self) -> str:
        """Where the KV cache type in force was learned."""
        return self.selected.kv_source if self.selected else ""

    def kv_bytes(self) -> int | None:
        """The exact KV cache of the context in force (None when the architecture is unknown)."""
        arch = self.selected.architecture if self.selected else None
        if arch is None or not self.limit:
            return None
        return ollama_kv_bytes(arch, self.limit, usable_cache_type(arch, self.kv_type))

    def gpu(self) -> MemorySampled | None:
        """The device that fills first (a GPU when there is one, else the host)."""
        return filling_first(self.devices.values())

"""The core of every run: the actors that make decisions (the same live, in replay and in the
golden recordings), the event log's header, and replay itself. A live session adds the
boundary actors around them (`ollm.live`)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from actors import FORMAT_VERSION as LOG_FORMAT
from actors import (
    ChildSpec,
    Envelope,
    FakeClock,
    LogContents,
    LogHeader,
    LogWriter,
    Recorder,
    ReplayResult,
    SeededIds,
    open_runtime,
    replay,
)

from . import __version__
from .config import Settings, digest, settings_from_dict, settings_to_dict, shown_host
from .context.compressor import CompressorActor
from .context.context_pool import ContextPoolActor
from .context.memory_guard import GuardPolicy, MemoryGuardActor
from .context.session import SessionActor, SessionPolicy
from .context.snapshot_manager import RetentionPolicy, SnapshotManagerActor
from .context.token_counter import TokenCounterActor, Tokenizers
from .conversation import Conversation, Resumed
from .events import ModelSelected, is_input
from .paths import cache_dir
from .providers.scripted import ScriptedProviderActor
from .storage.store import SnapshotStore
from .storage.tokenizer_cache import TokenizerCache


def tokenizer_cache() -> TokenizerCache:
    """Where each model's tokenizer is cached on this machine."""
    return TokenizerCache(cache_dir() / "tokenizers")


def core_specs(settings: Settings, tokenizers: Tokenizers | None = None) -> list[ChildSpec]:
    """The actors that make decisions: the same live and in replay (`tokenizers`: each
    model's own tokenizer by digest, the user cache's).

    Boundary actors (provider, probes, console) are added around these only in a live run.
    """
    policy = GuardPolicy.from_settings(settings.context)
    session = SessionPolicy.from_settings(settings)
    compression = settings.context.compression
    return [
        ChildSpec(name="session", factory=lambda: SessionActor(session, policy)),
        ChildSpec(name="token_counter", factory=lambda: TokenCounterActor(tokenizers)),
        ChildSpec(name="context_pool", factory=lambda: ContextPoolActor(compression.threshold)),
        ChildSpec(name="memory_guard", factory=lambda: MemoryGuardActor(policy)),
        ChildSpec(name="compressor", factory=lambda: CompressorActor(compression)),
    ]


def make_header(settings: Settings, *, id_seed: str, created_at: float) -> LogHeader:
    config = {"settings": settings_to_dict(settings)}
    config["settings"]["ollama"]["host"] = shown_host(settings.ollama.host)  # no password
    return LogHeader(
        format=LOG_FORMAT,
        app="ollm",
        app_version=__version__,
        config_digest=digest(config),
        config=config,
        id_seed=id_seed,
        created_at=created_at,
    )


def settings_from_header(header: LogHeader) -> Settings:
    """The settings a log was recorded with.

    Raises:
        ValueError: the header's configuration is not one this version understands.
    """
    try:
        return settings_from_dict(dict(header.config.get("settings", {})))
    except Exception as exc:
        raise ValueError(f"its header holds settings this ollm cannot use ({exc})") from exc


async def record_scripted(
    path: Path,
    settings: Settings,
    inputs: Sequence[tuple[float, Any]],
    *,
    seed: str,
    start: float = 1_700_000_000.0,
    provider: ChildSpec | None = None,
) -> None:
    """Run the core actors and a scripted provider on a fake clock, feeding
    `(seconds after start, input)` pairs in step mode, and record the session to `path`
    (golden logs and tests)."""
    clock = FakeClock(start)
    writer = LogWriter(path, make_header(settings, id_seed=seed, created_at=start))
    snapshots = settings.context.snapshots
    with tempfile.TemporaryDirectory() as scratch:
        specs = [
            *core_specs(settings),
            provider or ChildSpec(name="provider", factory=ScriptedProviderActor),
            ChildSpec(
                name="snapshot_manager",
                factory=lambda: SnapshotManagerActor(
                    SnapshotStore(Path(scratch)),
                    RetentionPolicy(keep=snapshots.max_count),
                    enabled=snapshots.enabled,
                ),
            ),
        ]
        try:
            async with open_runtime(
                specs, clock=clock, ids=SeededIds(seed), recorder=Recorder(writer)
            ) as runtime:
                for offset, event in inputs:
                    clock.set(start + offset)
                    await runtime.publish(event, source="scripted")
                    await runtime.settle()
        finally:
            writer.close()


async def replay_log(
    log: LogContents,
    *,
    envelopes: Iterable[Envelope[Any]] | None = None,
    keep: bool = True,
    observe: Callable[[Envelope[Any]], None] | None = None,
) -> ReplayResult:
    """Replay a recorded session through the core actors built from its own header
    (`envelopes` streams the recording instead of `log.envelopes`)."""
    specs = core_specs(settings_from_header(log.header), tokenizer_cache().get)
    return await replay(
        log, specs, is_input=is_input, envelopes=envelopes, keep=keep, observe=observe
    )


async def rebuild(log: LogContents, envelopes: Iterable[Envelope[Any]] | None = None) -> Resumed:
    """The conversation a session's recorded inputs lead to: its inputs re-run through the
    core actors (as replay does), so no derived event needs to have been written; what a
    crash cut short is completed. Streams: nothing but the conversation is kept."""
    conversation = Conversation()
    model: list[ModelSelected] = []
    last = [0]

    def fold(envelope: Envelope[Any]) -> None:
        conversation.apply(envelope.event)
        if isinstance(envelope.event, ModelSelected):
            model[:] = [envelope.event]

    def recorded() -> Iterator[Envelope[Any]]:
        for envelope in envelopes if envelopes is not None else log.envelopes:
            last[0] = envelope.seq
            yield envelope

    await replay_log(log, envelopes=recorded(), keep=False, observe=fold)
    return Resumed(state=conversation.state(), model=model[0] if model else None, last_seq=last[0])

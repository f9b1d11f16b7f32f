"""The live composition root: every actor of a running session, on one recorded runtime.

The REPL, `ollm -p` and the tests' live harness all start a session here, so they run the
same actors wired the same way: the core actors (`app.core_specs`, the same as in replay),
the Ollama provider, the VRAM monitor and the snapshot manager, plus whatever the caller
adds (the console). What differs between them is passed in: the clock, the memory source,
taps on the bus.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from sqlite3 import Connection
from typing import Any, Literal

import anyio.to_thread

from actors import (
    ChildSpec,
    Clock,
    Envelope,
    Recorder,
    SeededIds,
    SystemClock,
    new_seed,
    open_runtime,
)

from ..config import Settings
from ..context.snapshot_manager import RetentionPolicy, SnapshotManagerActor
from ..context.token_counter import Ledger
from ..context.vocabulary_loader import VocabularyLoaderActor
from ..context.vram_monitor import MonitorPolicy, VramMonitorActor
from ..conversation import resumed
from ..core import core_specs, make_header, rebuild, tokenizer_cache
from ..events import (
    AnyEvent,
    CalibrationRestored,
    ConversationState,
    FailureKind,
    ModelSelected,
    SessionOpened,
)
from ..gpu.chain import ProbeChain
from ..gpu.records import MemorySource
from ..paths import config_dir, data_home, private_dir
from ..profiles import ProfileError, Profiles, load_profiles
from ..providers.ollama import OllamaClient, OllamaProviderActor, make_http_client
from ..server_setup import ServerSetup
from ..storage.journal import (
    Checkpoint,
    JournalError,
    SessionLock,
    SessionWriter,
    calibration,
    connect,
    create_session,
    explain,
    find,
    note_crash,
    open_session,
    read_session,
    session_state,
    stream_session,
    told_keys,
)
from ..storage.session_files import legacy_log, new_session_id, sessions_root
from ..storage.store import SnapshotStore, SnapshotView
from ..storage.tokenizer_cache import TokenizerCache
from ._live_session import LiveSession
from ._requests import Requests
from ._selection import SelectionError, select_model
from ._server_env import read_server_setup
from ._status import Status

Tap = Callable[[Envelope[Any]], None]


@dataclass(frozen=True)
class Start:
    """How the user asked to start: model, size and session (None = from config / new)."""

    model: str | None = None
    size: int | None = None
    resume: str | None = None


StartFailure = FailureKind | Literal["record"]
"""What failed: the server (a provider failure kind) or the session's record."""


class StartError(Exception):
    """The session cannot start; `str()` is one sentence for the user.

    `failure` says what failed (None: the user's input or config)."""

    def __init__(self, message: str, failure: StartFailure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


def load_profile_db() -> Profiles:
    """The shipped profiles with the user's `LLM_profiles.json` laid over them.

    Raises:
        StartError: the user's file is unreadable or malformed.
    """
    try:
        return load_profiles(config_dir() / "LLM_profiles.json")
    except ProfileError as exc:
        raise StartError(str(exc)) from exc


def live_specs(
    settings: Settings,
    *,
    client: OllamaClient,
    store: SnapshotStore,
    memory: MemorySource,
    tokenizers: TokenizerCache,
    extra: Sequence[ChildSpec] = (),
) -> list[ChildSpec]:
    """Every actor of a live session, each configured from `settings` in one place."""
    context = settings.context

    async def show(model: str) -> dict[str, Any]:
        return (await client.show(model, verbose=True)).model_info

    return [
        *core_specs(settings, tokenizers.get),
        ChildSpec(
            name="provider",
            factory=lambda: OllamaProviderActor(client, keep_alive=settings.ollama.keep_alive),
        ),
        ChildSpec(
            name="vocabulary_loader", factory=lambda: VocabularyLoaderActor(show, tokenizers)
        ),
        ChildSpec(
            name="vram_monitor",
            factory=lambda: VramMonitorActor(
                memory,
                host=client.host,
                ps=client.ps,
                policy=MonitorPolicy.from_settings(context.guard),
            ),
        ),
        ChildSpec(
            name="snapshot_manager",
            factory=lambda: SnapshotManagerActor(
                store,
                RetentionPolicy.from_settings(context.snapshots),
                enabled=context.snapshots.enabled,
            ),
        ),
        *extra,
    ]


class RecordError(Exception):
    """The session's record (the journal) could not be written, so the session stopped;
    `str()` is one sentence. What was recorded before is intact."""


@dataclass(frozen=True)
class _Resumed:
    session_id: str
    state: ConversationState
    last_seq: int
    model: str | None


async def _resume(journal: Connection, home: Path, session_id: str, system: str) -> _Resumed:
    """The conversation of the session, as its record leads to it.

    A session whose last run ended cleanly goes on from the checkpoint kept at its close
    (reading no history); after a crash its inputs are re-run (`core.rebuild`), so what the
    crash cut short is completed, and the crash is noted so that a replay tells it apart
    from a divergence.
    """
    index = session_state(journal, session_id)
    if index.closed and index.checkpoint is not None:
        kept = index.checkpoint
        return _Resumed(session_id, kept.state, index.last_seq, kept.model or None)
    if index.closed:
        log = read_session(journal, home, session_id, AnyEvent)
        restored = resumed(log)
    else:
        meta, rows = stream_session(journal, home, session_id, AnyEvent)
        restored = await rebuild(meta, rows)
        note_crash(journal, home, session_id)
    model = restored.model.model if restored.model is not None else None
    state = restored.state if restored.last_seq else ConversationState(system_prompt=system)
    return _Resumed(session_id, state, index.last_seq, model)


@asynccontextmanager
async def open_live_session(
    settings: Settings,
    start: Start,
    *,
    extra: Sequence[ChildSpec] = (),
    clock: Clock | None = None,
    memory: MemorySource | None = None,
    taps: Sequence[Tap] = (),
) -> AsyncIterator[LiveSession]:
    """Select the model, open (or resume) the session's record and start every actor.

    Raises:
        StartError: the model cannot be used, the session cannot be resumed, or the
            journal cannot be opened.
        RecordError: the journal could not be written while the session ran.
    """
    home = data_home()
    clock = clock or SystemClock()
    try:
        journal = connect(home)
    except JournalError as exc:
        raise StartError(str(exc), "record") from exc
    lock: SessionLock | None = None
    try:
        state = ConversationState(system_prompt=settings.system_prompt)
        model, session_id, last_seq = start.model, "", 0
        if start.resume is not None:
            try:
                session_id = find(journal, start.resume)
                lock = SessionLock(home, session_id)
                lock.acquire()
                found = await _resume(journal, home, session_id, settings.system_prompt)
            except JournalError as exc:
                old = legacy_log(home, start.resume)
                if old is not None and not session_id:
                    raise StartError(
                        f"{old.parent.name} was recorded by an earlier ollm as {old}; this "
                        f"version cannot continue it, but `ollm replay {old}` shows it"
                    ) from exc
                raise StartError(str(exc)) from exc
            state, last_seq = found.state, found.last_seq
            model = model or found.model
        profiles = load_profile_db()
        host, timeout = settings.ollama.host, settings.ollama.timeout
        async with make_http_client(host, timeout) as http:
            client = OllamaClient(http, host, timeout)
            setup = await anyio.to_thread.run_sync(read_server_setup, client.host)
            try:
                selected = await select_model(
                    client,
                    settings,
                    profiles,
                    model=model,
                    size=start.size,
                    setup=setup,
                    vocabulary=True,
                )
            except SelectionError as exc:
                raise StartError(str(exc), exc.kind) from exc
            seed = new_seed()
            try:
                if not session_id:
                    header = make_header(settings, id_seed=seed, created_at=clock.now())
                    now = clock.now()
                    session_id = create_session(journal, home, header, lambda: new_session_id(now))
                    lock = SessionLock(home, session_id)
                    lock.acquire()
                writer = open_session(journal, home, session_id, None)
            except JournalError as exc:
                raise StartError(str(exc), "record") from exc
            record = _Record(
                home,
                session_id,
                writer,
                state,
                last_seq,
                seed,
                start.resume is not None,
                calibration(journal, selected.model),
                setup,
                told_keys(journal),
            )
            wiring = _Wiring(clock, memory or ProbeChain(), extra, taps)
            async with _running(settings, record, wiring, client, profiles, selected) as live:
                yield live
    finally:
        if lock is not None:
            lock.release()
        journal.close()


@dataclass(frozen=True)
class _Record:
    """The session's place in the journal, and what it goes on from."""

    home: Path
    session_id: str
    writer: SessionWriter
    state: ConversationState
    last_seq: int
    seed: str
    resumed: bool
    prior: tuple[float, int] | None = None
    """The model's calibration from an earlier session (factor, extra), if any."""
    setup: ServerSetup = field(default_factory=ServerSetup)
    """What the server runs (its KV cache type, …) and where that was read."""
    told: tuple[str, ...] = ()
    """The keys of once-only notices given in earlier sessions."""


@dataclass(frozen=True)
class _Wiring:
    """How the caller runs the session: its clock, memory source, extra actors and taps."""

    clock: Clock
    memory: MemorySource
    extra: Sequence[ChildSpec]
    taps: Sequence[Tap]


@asynccontextmanager
async def _running(
    settings: Settings,
    record: _Record,
    wiring: _Wiring,
    client: OllamaClient,
    profiles: Profiles,
    selected: ModelSelected,
) -> AsyncIterator[LiveSession]:
    """Every actor on one recorded runtime; the session is closed cleanly (its checkpoint
    kept) when the caller is done with it."""
    home, session_id, writer = record.home, record.session_id, record.writer
    status = Status(
        compress_at=settings.context.compression.threshold,
        compression_enabled=settings.context.compression.enabled,
    )
    requests = Requests()
    try:
        folder = private_dir(sessions_root(home) / session_id, inside=home)
        store = SnapshotStore(folder / "snapshots")
    except OSError as exc:
        raise StartError(str(explain(exc, home)), "record") from exc
    view = SnapshotView(store)
    tokenizers = tokenizer_cache()
    status.ledger = Ledger(tokenizers.get)
    status.snapshot_ids = [m.id for m in reversed((await view.listing()).snapshots)]
    specs = live_specs(
        settings,
        client=client,
        store=store,
        memory=wiring.memory,
        tokenizers=tokenizers,
        extra=wiring.extra,
    )
    recorder = Recorder(writer)
    try:
        async with open_runtime(
            specs,
            clock=wiring.clock,
            ids=SeededIds(record.seed),
            recorder=recorder,
            last_seq=record.last_seq,
            taps=(*wiring.taps, status.apply, requests.tap),
        ) as runtime:
            opened = SessionOpened(
                session_id=session_id,
                state=record.state,
                resumed=record.resumed,
                told=record.told,
            )
            await runtime.publish(opened, source="cli")
            await runtime.publish(selected, source="cli")
            if record.prior is not None:
                factor, extra = record.prior
                restored = CalibrationRestored(model=selected.model, factor=factor, extra=extra)
                await runtime.publish(restored, source="cli")
            yield LiveSession(
                runtime=runtime,
                session_id=session_id,
                settings=settings,
                selected=selected,
                status=status,
                client=client,
                profiles=profiles,
                requests=requests,
                snapshots_view=view,
                recorder=recorder,
                setup=record.setup,
            )
    except JournalError as exc:
        raise RecordError(str(exc)) from exc
    # The read model folds the conversation by the same rules as resuming does.
    model = status.selected.model if status.selected is not None else ""
    writer.close(Checkpoint(state=status.ledger.conversation.state(), model=model))

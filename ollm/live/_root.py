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
from dataclasses import dataclass
from typing import Any

from actors import (
    ChildSpec,
    Clock,
    Envelope,
    LogError,
    LogWriter,
    Recorder,
    SeededIds,
    SystemClock,
    new_seed,
    open_runtime,
    read_log,
)

from ..config import Settings, config_dir, data_home
from ..context.snapshot_manager import RetentionPolicy, SnapshotManagerActor
from ..context.vram_monitor import MonitorPolicy, VramMonitorActor
from ..conversation import resumed
from ..core import core_specs, make_header
from ..events import AnyEvent, ConversationState, FailureKind, SessionOpened
from ..gpu.chain import ProbeChain
from ..gpu.records import MemorySource
from ..profiles import ProfileError, Profiles, load_profiles
from ..providers.ollama import OllamaClient, OllamaProviderActor, make_http_client
from ..storage.session_files import (
    SessionError,
    find_session,
    new_session_id,
    private_dir,
    session_log,
)
from ..storage.store import SnapshotStore, SnapshotView
from ._live_session import LiveSession
from ._requests import Requests
from ._selection import SelectionError, select_model
from ._status import Status

Tap = Callable[[Envelope[Any]], None]


@dataclass(frozen=True)
class Start:
    """How the user asked to start: model, size and session (None = from config / new)."""

    model: str | None = None
    size: int | None = None
    resume: str | None = None


class StartError(Exception):
    """The session cannot start; `str()` is one sentence for the user.

    `failure` says what failed when the server did (None: the user's input or config)."""

    def __init__(self, message: str, failure: FailureKind | None = None) -> None:
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
    extra: Sequence[ChildSpec] = (),
) -> list[ChildSpec]:
    """Every actor of a live session, each configured from `settings` in one place."""
    context = settings.context
    return [
        *core_specs(settings),
        ChildSpec(
            name="provider",
            factory=lambda: OllamaProviderActor(client, keep_alive=settings.ollama.keep_alive),
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
    """Select the model, open (or resume) the session's log and start every actor.

    Raises:
        StartError: the model cannot be used or the session cannot be resumed.
    """
    home = data_home()
    clock = clock or SystemClock()
    state = ConversationState(system_prompt=settings.system_prompt)
    model, session_id, last_seq = start.model, "", 0
    if start.resume is not None:
        try:
            session_id = find_session(home, start.resume)
            restored = resumed(read_log(session_log(home, session_id), AnyEvent))
        except (SessionError, LogError) as exc:
            raise StartError(str(exc)) from exc
        state, last_seq = restored.state, restored.last_seq
        if model is None and restored.model is not None:
            model = restored.model.model
    profiles = load_profile_db()
    host, timeout = settings.ollama.host, settings.ollama.timeout
    async with make_http_client(host, timeout) as http:
        client = OllamaClient(http, host, timeout)
        try:
            selected = await select_model(client, settings, profiles, model=model, size=start.size)
        except SelectionError as exc:
            raise StartError(str(exc), exc.kind) from exc
        session_id = session_id or new_session_id(clock.now())
        path = session_log(home, session_id)
        private_dir(path.parent)
        seed = new_seed()
        writer = LogWriter(path, make_header(settings, id_seed=seed, created_at=clock.now()))
        status = Status(
            compress_at=settings.context.compression.threshold,
            compression_enabled=settings.context.compression.enabled,
        )
        requests = Requests()
        store = SnapshotStore(path.parent / "snapshots")
        view = SnapshotView(store)
        status.snapshot_ids = [m.id for m in reversed((await view.listing()).snapshots)]
        specs = live_specs(
            settings, client=client, store=store, memory=memory or ProbeChain(), extra=extra
        )
        try:
            async with open_runtime(
                specs,
                clock=clock,
                ids=SeededIds(seed),
                recorder=Recorder(writer),
                last_seq=last_seq,
                taps=(*taps, status.apply, requests.tap),
            ) as runtime:
                await runtime.publish(
                    SessionOpened(
                        session_id=session_id, state=state, resumed=start.resume is not None
                    ),
                    source="cli",
                )
                await runtime.publish(selected, source="cli")
                yield LiveSession(
                    runtime=runtime,
                    session_id=session_id,
                    log_path=path,
                    settings=settings,
                    selected=selected,
                    status=status,
                    client=client,
                    profiles=profiles,
                    requests=requests,
                    snapshots_view=view,
                )
        finally:
            writer.close()

"""A live session: the core actors, the provider and the console on one runtime, recorded."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio

from actors import (
    ChildSpec,
    LogError,
    LogWriter,
    Recorder,
    Runtime,
    SeededIds,
    SystemClock,
    new_seed,
    open_runtime,
    read_log,
)

from ..app import core_specs, make_header
from ..config import Settings, config_dir, data_home
from ..context.snapshot_manager import RetentionPolicy, SnapshotManagerActor
from ..context.vram_monitor import MonitorPolicy, VramMonitorActor
from ..events import (
    AnyEvent,
    CancelRequested,
    ConversationState,
    SessionOpened,
    UserSubmitted,
)
from ..gpu.chain import ProbeChain
from ..profiles import ProfileError, Profiles, load_profiles
from ..providers.ollama import OllamaClient, OllamaProviderActor, make_http_client
from ..selection import SelectionError, select_model
from ..sessions import SessionError, find_session, new_session_id, private_dir, restore, session_log
from ..storage.store import SnapshotStore
from .console import ConsoleActor, Turns
from .exits import EXIT_CANCELLED, EXIT_CODES, EXIT_USAGE
from .status import Status
from .waiters import Waiters


@dataclass(frozen=True)
class Start:
    """How the user asked to start: model, size and session (None = from config / new)."""

    model: str | None = None
    size: int | None = None
    resume: str | None = None


class StartError(Exception):
    """The session cannot start; `str()` is one sentence, `code` the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class LiveSession:
    runtime: Runtime
    session_id: str
    log_path: Path
    turns: Turns
    model: str
    num_ctx: int
    settings: Settings
    client: OllamaClient
    profiles: Profiles
    status: Status
    waiters: Waiters
    store: SnapshotStore

    async def send(self, text: str) -> None:
        self.turns.begin()
        await self.runtime.publish(UserSubmitted(text=text), source="cli")

    async def publish(self, event: object) -> None:
        await self.runtime.publish(event, source="cli")

    async def cancel(self) -> None:
        await self.runtime.publish(CancelRequested(), source="cli")


def load_profile_db() -> Profiles:
    try:
        return load_profiles(config_dir() / "LLM_profiles.json")
    except ProfileError as exc:
        raise StartError(str(exc), EXIT_USAGE) from exc


@asynccontextmanager
async def open_live_session(
    settings: Settings,
    start: Start,
    *,
    out: TextIO,
    err: TextIO,
    extra: Sequence[ChildSpec] = (),
) -> AsyncIterator[LiveSession]:
    """Select the model, open (or resume) the session's log and start every actor.

    Raises:
        StartError: the model cannot be used or the session cannot be resumed.
    """
    home = data_home()
    clock = SystemClock()
    state = ConversationState(system_prompt=settings.system_prompt)
    model, size, resume = start.model, start.size, start.resume
    session_id = ""
    last_seq = 0
    if resume is not None:
        try:
            session_id = find_session(home, resume)
            restored = restore(read_log(session_log(home, session_id), AnyEvent))
        except (SessionError, LogError) as exc:
            raise StartError(str(exc), EXIT_USAGE) from exc
        state, last_seq = restored.state, restored.last_seq
        if model is None and restored.model is not None:
            model = restored.model.model
    profiles = load_profile_db()
    host, timeout = settings.ollama.host, settings.ollama.timeout
    async with make_http_client(host, timeout) as http:
        client = OllamaClient(http, host, timeout)
        try:
            selected = await select_model(client, settings, profiles, model=model, size=size)
        except SelectionError as exc:
            code = EXIT_CODES.get(exc.kind, 1) if exc.kind else EXIT_USAGE
            raise StartError(str(exc), code) from exc
        session_id = session_id or new_session_id(clock.now())
        path = session_log(home, session_id)
        private_dir(path.parent)
        seed = new_seed()
        writer = LogWriter(path, make_header(settings, id_seed=seed, created_at=clock.now()))
        turns = Turns()
        status = Status(
            compress_at=settings.context.compression.threshold,
            compression_enabled=settings.context.compression.enabled,
        )
        waiters = Waiters()
        store = SnapshotStore(path.parent / "snapshots")
        status.snapshots = len(store.listing().snapshots)
        specs = [
            *core_specs(settings),
            ChildSpec(
                name="provider",
                factory=lambda: OllamaProviderActor(client, keep_alive=settings.ollama.keep_alive),
            ),
            ChildSpec(
                name="vram_monitor",
                factory=lambda: VramMonitorActor(
                    ProbeChain(),
                    host=host,
                    ps=client.ps,
                    policy=MonitorPolicy(
                        busy_interval=settings.context.guard.poll_busy_seconds,
                        idle_interval=settings.context.guard.poll_idle_seconds,
                    ),
                ),
            ),
            ChildSpec(
                name="snapshot_manager",
                factory=lambda: SnapshotManagerActor(
                    store,
                    RetentionPolicy(
                        keep=settings.context.snapshots.max_count,
                        max_age_days=settings.context.snapshots.max_age_days,
                    ),
                    enabled=settings.context.snapshots.enabled,
                ),
            ),
            ChildSpec(name="console", factory=lambda: ConsoleActor(out, err, turns)),
            *extra,
        ]
        try:
            async with open_runtime(
                specs,
                clock=clock,
                ids=SeededIds(seed),
                recorder=Recorder(writer),
                last_seq=last_seq,
                taps=(status.apply, waiters.tap),
            ) as runtime:
                await runtime.publish(
                    SessionOpened(session_id=session_id, state=state, resumed=resume is not None),
                    source="cli",
                )
                await runtime.publish(selected, source="cli")
                yield LiveSession(
                    runtime,
                    session_id,
                    path,
                    turns,
                    selected.model,
                    selected.num_ctx,
                    settings,
                    client,
                    profiles,
                    status,
                    waiters,
                    store,
                )
        finally:
            writer.close()


async def wait_turn(live: LiveSession) -> None:
    """Wait for the current turn to end; Ctrl-C (SIGINT) meanwhile cancels the reply."""
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:

            async def cancel_on_signal() -> None:
                async for _ in signals:
                    await live.cancel()

            tg.start_soon(cancel_on_signal)
            await live.turns.finished.wait()
            tg.cancel_scope.cancel()


def exit_code(turns: Turns) -> int:
    if turns.cancelled:
        return EXIT_CANCELLED
    return EXIT_CODES.get(turns.failure, 1) if turns.failure else 0


def is_terminal(stream: TextIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False

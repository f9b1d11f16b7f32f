"""The composition root: builds the supervision tree and the session's event log from config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from actors import FORMAT_VERSION as LOG_FORMAT
from actors import (
    ChildSpec,
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
from .config import Settings, digest, settings_from_dict, settings_to_dict
from .context.memory_guard import GuardPolicy, MemoryGuardActor
from .context.session import SessionActor
from .context.token_counter import TokenCounterActor
from .events import is_input


class RunConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a run's decisions depend on; recorded in the log header for replay."""

    settings: Settings = Settings()
    num_ctx: int
    """The context sent to Ollama, and the denominator of every threshold."""
    model: str = ""


def core_specs(run: RunConfig) -> list[ChildSpec]:
    """The actors that make decisions: the same live and in replay.

    Boundary actors (provider, probes, REPL) are added around these only in a live run.
    """
    policy = GuardPolicy.from_settings(run.settings.context)
    return [
        ChildSpec(name="session", factory=SessionActor),
        ChildSpec(name="token_counter", factory=lambda: TokenCounterActor(run.num_ctx)),
        ChildSpec(name="memory_guard", factory=lambda: MemoryGuardActor(policy)),
    ]


def make_header(run: RunConfig, *, id_seed: str, created_at: float) -> LogHeader:
    config = {
        "settings": settings_to_dict(run.settings),
        "num_ctx": run.num_ctx,
        "model": run.model,
    }
    return LogHeader(
        format=LOG_FORMAT,
        app="ollm",
        app_version=__version__,
        config_digest=digest(config),
        config=config,
        id_seed=id_seed,
        created_at=created_at,
    )


def run_config_from_header(header: LogHeader) -> RunConfig:
    """The run configuration a log was recorded with.

    Raises:
        ValueError: the header's configuration is not one this version understands.
    """
    config = header.config
    try:
        return RunConfig(
            settings=settings_from_dict(config.get("settings", {})),
            num_ctx=int(config["num_ctx"]),
            model=str(config.get("model", "")),
        )
    except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
        raise ValueError(f"its header holds a configuration this ollm cannot use ({exc})") from exc


async def record_scripted(
    path: Path,
    run: RunConfig,
    inputs: Sequence[tuple[float, object]],
    *,
    seed: str,
    start: float = 1_700_000_000.0,
) -> None:
    """Run the core actors on a fake clock, feeding `(seconds after start, input)` pairs in
    step mode, and record the session to `path` (used for golden logs and tests)."""
    clock = FakeClock(start)
    writer = LogWriter(path, make_header(run, id_seed=seed, created_at=start))
    try:
        async with open_runtime(
            core_specs(run), clock=clock, ids=SeededIds(seed), recorder=Recorder(writer)
        ) as runtime:
            for offset, event in inputs:
                clock.set(start + offset)
                await runtime.publish(event, source="scripted")
                await runtime.settle()
    finally:
        writer.close()


async def replay_log(log: LogContents) -> ReplayResult:
    """Replay a recorded session through the core actors built from its own header."""
    run = run_config_from_header(log.header)
    return await replay(log, core_specs(run), is_input=is_input)

"""Every session replays, decision for decision: generated sessions mixing chat, every
`/context` command, `/model`, background compressions overlapping new messages, Ctrl-C,
provider faults and memory samples, run live against the Ollama test server, then
`replay --check`ed from the journal."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollm.config import Settings
from ollm.core import replay_log
from ollm.events import (
    ClearFailed,
    ClearRequested,
    CompressionCompleted,
    CompressionFailed,
    CompressRequested,
    ContextCleared,
    ModelLoaded,
    ModelLoadFailed,
    ReplyChunk,
    ResizeDeclined,
    ResizeRequested,
    RestoreFailed,
    RestoreRequested,
    SnapshotCreated,
    SnapshotFailed,
    SnapshotRequested,
    SnapshotRestored,
)
from ollm.gpu.records import DeviceMemory, Reading
from ollm.live import session_log
from tests.fakes.ollama_server import FakeModel, open_ollama_server

from .live import open_live

GiB = 1024**3
WORDS = "the quick brown fox jumps over the lazy dog "


class ChangingMemory:
    """A GPU whose free memory the test sets before each sample."""

    def __init__(self) -> None:
        self.free = 20 * GiB

    def read(self) -> Reading:
        gpu = DeviceMemory(
            backend="nvml",
            index=0,
            name="test GPU",
            total_bytes=24 * GiB,
            free_bytes=self.free,
            used_bytes=24 * GiB - self.free,
        )
        return Reading(devices=(gpu,), source="nvml")


step = st.one_of(
    st.tuples(st.just("say"), st.integers(1, 60)),
    st.tuples(st.just("fault"), st.sampled_from(["overflow", "oom", "error_midstream", "busy"])),
    st.tuples(st.just("cancel"), st.integers(1, 20)),
    st.tuples(st.just("memory"), st.sampled_from([0.3, 0.45, 2.0, 8.0, 20.0])),
    st.tuples(st.just("size"), st.sampled_from([2048, 4096, 8192])),
    st.tuples(st.just("auto"), st.just(0)),
    st.tuples(st.just("snapshot"), st.just(0)),
    st.tuples(st.just("restore"), st.just(0)),
    st.tuples(st.just("compress"), st.just(0)),
    st.tuples(st.just("clear"), st.just(0)),
    st.tuples(st.just("model"), st.sampled_from(["llama3.1:8b", "other:1b"])),
)


RESIZED = (ResizeDeclined, ModelLoaded, ModelLoadFailed)
COMMANDS: dict[str, Callable[[object], tuple[object, tuple[type, ...]]]] = {
    "size": lambda v: (ResizeRequested(reason="size", size=int(str(v))), RESIZED),
    "auto": lambda v: (ResizeRequested(reason="auto", auto=True), RESIZED),
    "snapshot": lambda v: (SnapshotRequested(reason="manual"), (SnapshotCreated, SnapshotFailed)),
    "compress": lambda v: (
        CompressRequested(reason="user"),
        (CompressionCompleted, CompressionFailed),
    ),
    "clear": lambda v: (ClearRequested(), (ContextCleared, ClearFailed)),
}


def new_since(old: list[ReplyChunk]) -> Callable[[ReplyChunk], bool]:
    seen = {id(e) for e in old}
    return lambda e: id(e) not in seen


async def session(steps: list[tuple[str, int | float | str]]) -> str:
    memory = ChangingMemory()
    wait = 5.0
    async with open_ollama_server() as server:
        server.models["other:1b"] = FakeModel("other:1b")
        base = Settings()
        settings = msgspec.structs.replace(
            base, context=msgspec.structs.replace(base.context, target_size=4096)
        )
        async with open_live(server, settings, memory=memory) as live:
            door, h = live.session, live.h
            for kind, value in steps:
                if kind == "say":
                    await live.say(f"{value}: " + WORDS * int(value))
                elif kind == "fault":
                    server.fault(str(value))  # type: ignore[arg-type]
                    await live.say("this one meets a fault")
                elif kind == "cancel":
                    server.fault("stall")
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(door.send, "a long story, please")
                        # Ctrl-C once the stalled reply has begun to stream.
                        await h.wait_for(ReplyChunk, new_since(h.events(ReplyChunk)))
                        await door.cancel()
                    await h.settle()
                elif kind == "memory":
                    memory.free = int(float(value) * GiB)
                    await h.advance(30)
                elif kind == "restore":
                    listing = await door.snapshots()
                    if listing.snapshots:
                        restore = RestoreRequested(snapshot_id=listing.snapshots[0].id)
                        await door.request(
                            restore, until=(SnapshotRestored, RestoreFailed), timeout=wait
                        )
                elif kind == "model":
                    selected = await door.select_model(str(value))
                    await door.request(selected, until=(ModelLoaded, ModelLoadFailed), timeout=wait)
                else:  # a /context command: its request, and the events that answer it
                    event, until = COMMANDS[kind](value)
                    # A compression already under way takes the request over.
                    await door.request(event, until=until, timeout=wait, caused=kind != "compress")
                # No settle here: background work (a summary) overlaps the next step.
            await h.settle()
            return door.session_id


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(step, min_size=2, max_size=9))
def test_generated_live_sessions_replay_decision_for_decision(steps):
    session_id = anyio.run(session, steps, backend="asyncio")
    log = session_log(Path(os.environ["OLLM_HOME"]), session_id)
    result = anyio.run(replay_log, log, backend="asyncio")
    assert result.divergence is None, f"{steps}: {result.divergence.describe()}"

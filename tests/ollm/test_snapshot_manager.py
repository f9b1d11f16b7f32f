"""The snapshot manager with the real actors: automatic snapshots, cleanup, exact restores."""

from __future__ import annotations

import msgspec
import pytest

from actors import ChildSpec
from actors.testing import open_harness
from ollm.config import CompressionSettings, ContextSettings, Settings
from ollm.context.snapshot_manager import RetentionPolicy, SnapshotManagerActor, to_prune
from ollm.core import core_specs
from ollm.events import (
    ChatRequested,
    ContextReduced,
    ConversationState,
    ModelSelected,
    RestoreFailed,
    RestoreRequested,
    SessionOpened,
    SnapshotCreated,
    SnapshotRequested,
    SnapshotRestored,
    UserNotified,
    UserSubmitted,
)
from ollm.providers.scripted import ScriptedProviderActor
from ollm.storage.snapshot_file import SnapshotMeta
from ollm.storage.store import INDEX, IndexFile, SnapshotStore
from tests.fakes.ollama_server import open_ollama_server

from .live import open_live

pytestmark = pytest.mark.anyio


def manager(directory, keep: int = 5) -> ChildSpec:
    return ChildSpec(
        name="snapshot_manager",
        factory=lambda: SnapshotManagerActor(SnapshotStore(directory), RetentionPolicy(keep=keep)),
    )


NO_COMPRESSION = Settings(context=ContextSettings(compression=CompressionSettings(enabled=False)))


def specs(directory, keep: int = 5, settings: Settings | None = None):
    return [
        *core_specs(settings or Settings()),
        ChildSpec(name="provider", factory=ScriptedProviderActor),
        manager(directory, keep),
    ]


async def opened(h, num_ctx: int = 8192):
    await h.publish(SessionOpened(session_id="s1", state=ConversationState(system_prompt="Hi.")))
    await h.inject(ModelSelected(model="m", size=num_ctx, num_ctx=num_ctx))


async def test_eight_automatic_snapshots_with_max_five_leave_exactly_five(tmp_path):
    directory = tmp_path / "snapshots"
    async with open_harness(*specs(directory, keep=5)) as h:
        await opened(h)
        for i in range(8):
            await h.inject(UserSubmitted(text=f"turn {i}"))
            await h.advance(1)
            await h.inject(SnapshotRequested(reason="auto"))
        created = h.events(SnapshotCreated)
        assert len(created) == 8
        assert all(c.snapshot_id not in c.pruned for c in created)
    files = sorted(p.name for p in directory.glob("*.snap"))
    assert len(files) == 5
    index = msgspec.json.decode((directory / INDEX).read_bytes(), type=IndexFile)
    assert sorted(e.file for e in index.entries) == files
    kept = {c.snapshot_id for c in created[-5:]}
    assert {f.removesuffix(".snap") for f in files} == kept, "the newest five"


def test_the_cleanup_never_deletes_the_one_just_made_and_can_prune_by_age():
    def m(i: str, at: float) -> SnapshotMeta:
        return SnapshotMeta(
            id=i,
            session_id="s",
            created_at=at,
            model="m",
            num_ctx=1,
            tokens=0,
            messages=0,
            compression_ratio=1,
            reason="auto",
        )

    snaps = [m("a", 1), m("b", 2), m("c", 3), m("old", 0)]
    assert to_prune(snaps, RetentionPolicy(keep=2), just_made="old", now=10) == ["b", "a"]
    assert to_prune(snaps, RetentionPolicy(keep=9, max_age_days=1), "c", now=86400 + 2.5) == [
        "b",
        "a",
        "old",
    ]


async def test_restore_gives_back_the_saved_conversation_and_the_next_request_is_the_same(tmp_path):
    questions = ["What is a B-tree?", "Why are they shallow?", "How do they split nodes?"]
    later = ["Unrelated: what time zone is UTC+2?", "And UTC-5?"]
    final = "So which would you pick for an index on disk?"
    async with open_ollama_server() as server:
        async with open_live(server) as live:
            for q in questions:
                await live.say(q)
            await live.h.inject(SnapshotRequested(reason="manual"))
            snapshot = live.h.expect(SnapshotCreated)
            for q in later:
                await live.say(q)
            await live.h.inject(RestoreRequested(snapshot_id=snapshot.snapshot_id[:4]))
            restored = live.h.expect(SnapshotRestored)
            assert [m.content for m in restored.state.messages if m.role == "user"] == questions
            await live.say(final)
            after_restore = server.chats()[-1]
        async with open_live(server) as control:
            for q in questions:
                await control.say(q)
            await control.say(final)
            would_have = server.chats()[-1]
    assert after_restore["messages"] == would_have["messages"], "exactly the saved conversation"
    assert after_restore["options"] == would_have["options"]
    contents = [m["content"] for m in after_restore["messages"]]
    assert len(contents) == len(set(contents)), "no duplicates"


async def test_a_bad_restore_changes_nothing_and_says_why(tmp_path):
    async with open_harness(*specs(tmp_path / "s")) as h:
        await opened(h)
        await h.inject(UserSubmitted(text="keep me"))
        await h.inject(RestoreRequested(snapshot_id="../../etc/passwd"))
        failed = h.expect(RestoreFailed)
        assert "is not a snapshot id" in failed.message
        assert any("nothing restored" in n.text for n in h.events(UserNotified))
        assert h.events(SnapshotRestored) == []
        await h.inject(UserSubmitted(text="still here?"))
        last = h.events(ChatRequested)[-1]
        assert [m.content for m in last.messages if m.role == "user"] == ["keep me", "still here?"]


async def test_the_turns_dropped_at_the_hard_limit_are_in_the_snapshot_taken_just_before(tmp_path):
    async with open_harness(*specs(tmp_path / "s", settings=NO_COMPRESSION)) as h:
        await opened(h, num_ctx=2048)
        for i in range(20):
            await h.inject(UserSubmitted(text=f"part {i} " + "lorem ipsum dolor " * 25))
        reduced = h.envelopes(ContextReduced)[0]
        before = [e for e in h.envelopes(SnapshotCreated) if e.seq < reduced.seq + 50]
        assert before, "a snapshot was taken before the oldest turns were dropped"
        await h.inject(RestoreRequested(snapshot_id=before[0].event.snapshot_id))
        state = h.expect(SnapshotRestored).state
        ids = {m.id for m in state.messages}
        assert set(reduced.event.removed_ids) <= ids, "restoring it brings them back"

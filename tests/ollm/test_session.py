"""The session's decisions, on the harness with the scripted provider (no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from actors import ChildSpec, Envelope
from actors.testing import open_harness
from ollm.config import Settings
from ollm.context.session import SessionActor, SessionPolicy, reply_budget
from ollm.conversation import Conversation
from ollm.core import core_specs
from ollm.events import (
    ChatRequested,
    ClearRequested,
    CompressionCompleted,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    ConversationState,
    Message,
    MessageAdded,
    MessageUnanswered,
    ModelLoaded,
    ModelSelected,
    SessionOpened,
    SnapshotCreated,
    SnapshotFailed,
    SnapshotRequested,
    UsageChanged,
    UserNotified,
    UserSubmitted,
)
from ollm.providers.scripted import ScriptedProviderActor

pytestmark = pytest.mark.anyio


def specs(**provider):
    return [
        *core_specs(Settings()),
        ChildSpec(name="provider", factory=lambda: ScriptedProviderActor(**provider)),
    ]


async def opened(h, state=None, num_ctx=4096):
    await h.publish(
        SessionOpened(session_id="s", state=state or ConversationState(system_prompt="Hi."))
    )
    await h.inject(ModelSelected(model="m", size=num_ctx, num_ctx=num_ctx))


async def test_a_message_sent_while_a_reply_streams_waits_its_turn():
    async with open_harness(*specs()) as h:
        await opened(h)
        await h.publish(UserSubmitted(text="first"))
        await h.publish(UserSubmitted(text="second"))
        await h.settle()
        roles = [e.message.role for e in h.events(MessageAdded)]
        assert roles == ["user", "assistant", "user", "assistant"]
        second = h.events(ChatRequested)[1]
        assert [m.content for m in second.messages if m.role == "user"] == ["first", "second"]


async def test_requests_carry_the_runner_options_and_a_bounded_reply():
    async with open_harness(*specs()) as h:
        await opened(h, num_ctx=4096)
        await h.inject(UserSubmitted(text="hello"))
        request = h.expect(ChatRequested)
        assert request.options.num_ctx == 4096
        assert request.messages[0].role == "system"
        assert 64 <= request.num_predict <= 2048
        assert request.think is None


def test_the_reply_budget_is_bounded_by_the_room_left():
    policy = SessionPolicy(max_reply_tokens=2048, min_reply_tokens=64)
    assert reply_budget(policy, 8192, 1000) == 2048
    assert reply_budget(policy, 8192, 7000) == 1192
    assert reply_budget(policy, 8192, 8190) == 64


async def test_a_failure_marks_the_message_and_a_resumed_state_is_continued():
    async with open_harness(*specs(failures=[("server_error", "it broke")])) as h:
        await opened(h)
        await h.inject(UserSubmitted(text="one"))
        assert h.expect(MessageUnanswered).reason == "it broke"
        await h.inject(UserSubmitted(text="two"))
        assert h.events(MessageAdded)[-1].message.role == "assistant"
    earlier = ConversationState(
        messages=(
            Message(id="m1", role="user", content="old question"),
            Message(id="m2", role="assistant", content="old answer"),
        ),
        next_message=3,
        next_request=2,
    )
    async with open_harness(*specs()) as h:
        await opened(h, state=earlier)
        await h.inject(UserSubmitted(text="new question"))
        request = h.expect(ChatRequested)
        assert request.request_id == "r2"
        assert [m.content for m in request.messages] == [
            "old question",
            "old answer",
            "new question",
        ]
        assert h.events(MessageAdded)[0].message.id == "m3"


async def _clear_requested(h):
    await h.inject(UserSubmitted(text="remember kiwi"))
    await h.publish(ClearRequested())
    await h.settle()
    return h.expect(SnapshotRequested)


async def test_clear_waits_for_its_snapshot_and_names_it():
    async with open_harness(*specs()) as h:
        await opened(h)
        asked = await _clear_requested(h)
        assert asked.reason == "manual" and asked.ref.startswith("clear-")
        await h.publish(UserSubmitted(text="after"))
        await h.settle()
        assert not h.events(ContextCleared), "nothing is cleared before the snapshot exists"
        assert len(h.events(ChatRequested)) == 1, "a message waits for the clear"
        await h.publish(SnapshotCreated(snapshot_id="abc123", reason="manual", ref=asked.ref))
        await h.settle()
        cleared = h.expect(ContextCleared)
        assert cleared.snapshot_id == "abc123" and not cleared.keep_summary
        assert any(
            "`/context restore abc123` brings it back" in n.text for n in h.events(UserNotified)
        )
        last = h.events(ChatRequested)[-1]
        assert [(m.role, m.content) for m in last.messages] == [
            ("system", "Hi."),
            ("user", "after"),
        ]


async def test_clear_whose_snapshot_fails_clears_nothing():
    async with open_harness(*specs()) as h:
        await opened(h)
        asked = await _clear_requested(h)
        await h.publish(SnapshotFailed(reason="manual", message="the disk is full", ref=asked.ref))
        await h.publish(UserSubmitted(text="still there?"))
        await h.settle()
        assert not h.events(ContextCleared)
        assert any(
            n.text.startswith("nothing was cleared") and "the disk is full" in n.text
            for n in h.events(UserNotified)
        )
        last = h.events(ChatRequested)[-1]
        assert [m.content for m in last.messages if m.role == "user"] == [
            "remember kiwi",
            "still there?",
        ]


class NumberingBus:
    """Stands in for the session's `Context`: numbers each event as the bus does, so a test
    can hand the session an event another actor published earlier than the session's own."""

    def __init__(self) -> None:
        self.seq = 0
        self.current: Envelope[Any] | None = None
        self.published: list[Envelope[Any]] = []

    def number(self) -> int:
        self.seq += 1
        return self.seq

    async def publish(self, event: Any, causation: int | None = None) -> Envelope[Any]:
        envelope = Envelope(
            seq=self.number(), at=0.0, source="session", causation=causation, event=event
        )
        self.published.append(envelope)
        return envelope

    async def deliver(
        self, actor: Any, event: Any, seq: int | None = None, causation: int | None = None
    ) -> None:
        self.current = Envelope(
            seq=seq or self.number(), at=0.0, source="test", causation=causation, event=event
        )
        await actor.handle(event, self)


async def test_a_compression_the_bus_ordered_first_is_folded_before_the_sessions_reduction():
    """The emergency compression and the hard-limit drop race: the compressor publishes first,
    the session (not yet having seen it) reduces, then handles the compression. The session's
    conversation — what its next request carries — is the one every other actor and a replay
    fold in the bus's order, not the one its own handling order would give."""
    history = [
        Message(id=f"m{i}", role="user" if i % 2 else "assistant", content=f"turn {i} " * 40)
        for i in range(1, 9)
    ]
    state = ConversationState(system_prompt="Hi.", messages=tuple(history), next_message=9)
    session = SessionActor()
    bus = NumberingBus()
    for event in (
        SessionOpened(session_id="s", state=state),
        ModelSelected(model="m", size=1000, num_ctx=1000),
        ContextSizeChosen(model="m", size=1000, num_ctx=1000, reason="test"),
        ModelLoaded(model="m", context_length=1000),
        UserSubmitted(text="the newest question"),
    ):
        await bus.deliver(session, event)
    (added,) = [e for e in bus.published if isinstance(e.event, MessageAdded)]
    compression_seq = bus.number()  # the compressor published here; the session sees it later
    usage = UsageChanged(used_tokens=950, limit_tokens=1000, newest_tokens=10, base_tokens=20)
    await bus.deliver(session, usage, causation=added.seq)
    (reduced,) = [e.event for e in bus.published if isinstance(e.event, ContextReduced)]
    compressed = CompressionCompleted(
        ref="c1",
        strategy="hybrid",
        covered_ids=("m1", "m2", "m3", "m4"),
        summary="They talked about turns.",
        pinned=("the user's rule",),
        original_tokens=600,
        compressed_tokens=40,
        ratio=0.07,
    )
    await bus.deliver(session, compressed, seq=compression_seq)

    def folded(*events: Any) -> ConversationState:
        conversation = Conversation.from_state(state)
        for event in events:
            conversation.apply(event)
        return conversation.state()

    in_bus_order = folded(added.event, compressed, reduced)
    assert in_bus_order != folded(added.event, reduced, compressed), "the orders differ here"
    assert session.conversation.state() == in_bus_order

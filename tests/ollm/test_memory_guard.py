from __future__ import annotations

import math
from fractions import Fraction

import pytest

from actors import ChildSpec
from actors.testing import open_harness
from ollm.config import Settings
from ollm.context.memory_guard import (
    DropFirst,
    GuardPolicy,
    GuardState,
    Level,
    MemoryGuardActor,
    Refuse,
    Send,
    before_send,
    on_memory,
    on_usage,
    threshold_tokens,
)
from ollm.conversation import Conversation
from ollm.events import (
    CompressRequested,
    CriticalLimitHit,
    HardLimitHit,
    LowMemory,
    MemoryRecovered,
    MemorySampled,
    Message,
    ResizeRequested,
    SnapshotRequested,
    SoftLimitHit,
    UsageChanged,
    UserNotified,
)
from ollm.tokens import message_tokens

MB = 1024 * 1024


def usage(used: int, limit: int = 3482) -> UsageChanged:
    return UsageChanged(used_tokens=used, limit_tokens=limit)


def test_thresholds_are_fractions_of_num_ctx_as_the_spec_counts_them():
    assert threshold_tokens(0.75, 3482) == 2611
    assert threshold_tokens(0.80, 3482) == 2785
    policy = GuardPolicy()
    assert policy.level(2610, 3482) is Level.NORMAL
    assert policy.level(2611, 3482) is Level.SOFT
    assert policy.level(2785, 3482) is Level.SNAPSHOT
    assert policy.level(3482, 3482) is Level.CRITICAL


def test_each_threshold_fires_once_on_the_way_up_and_rearms_below():
    policy, state = GuardPolicy(), GuardState()
    assert on_usage(policy, state, usage(2610)) == []
    assert on_usage(policy, state, usage(2611)) == [
        SoftLimitHit(used_tokens=2611, limit_tokens=3482, threshold=0.75),
        CompressRequested(reason="auto"),
        UserNotified(level="info", text="the context is 75% full (2611 of 3482 tokens)"),
    ]
    assert on_usage(policy, state, usage(2700)) == [], "no duplicate while still above"
    assert on_usage(policy, state, usage(1000)) == []
    assert [type(e) for e in on_usage(policy, state, usage(3400))] == [
        SoftLimitHit,
        CompressRequested,
        UserNotified,
        SnapshotRequested,
        HardLimitHit,
        CriticalLimitHit,
        CompressRequested,
        UserNotified,
    ]


def test_disabled_compression_and_snapshots_are_not_requested():
    policy = GuardPolicy(compression_enabled=False, auto_snapshot=False)
    out = on_usage(policy, GuardState(), usage(2800))
    assert [type(e) for e in out] == [SoftLimitHit, UserNotified]


def test_low_memory_has_hysteresis():
    policy, state = GuardPolicy(), GuardState()

    def sample(free_mb: int) -> list[object]:
        s = MemorySampled(device="nvidia:0", total_bytes=8192 * MB, free_bytes=free_mb * MB)
        return list(on_memory(policy, state, s))

    assert sample(600) == []
    low = sample(400)
    assert low[0] == LowMemory(device="nvidia:0", free_bytes=400 * MB, threshold_bytes=512 * MB)
    assert low[1] == ResizeRequested(reason="low memory on nvidia:0 (400 MiB free)")
    assert sample(300) == []
    assert sample(900) == [], "between the thresholds: still low, no flapping"
    assert sample(1100)[0] == MemoryRecovered(
        device="nvidia:0", free_bytes=1100 * MB, threshold_bytes=1024 * MB
    )


@pytest.mark.anyio
async def test_usage_changed_runs_through_the_guard_to_a_compression_request():
    spec = ChildSpec(name="memory_guard", factory=lambda: MemoryGuardActor(GuardPolicy()))
    async with open_harness(spec) as h:
        injected = await h.inject(usage(2700))
        soft, request = h.envelopes(SoftLimitHit)[0], h.envelopes(CompressRequested)[0]
        assert soft.event == SoftLimitHit(used_tokens=2700, limit_tokens=3482, threshold=0.75)
        assert request.event == CompressRequested(reason="auto")
        assert soft.source == request.source == "memory_guard"
        assert soft.causation == request.causation == injected.seq
        assert soft.seq < request.seq


# --- one Level, one policy: the guard's thresholds and the decision before each send -------

LIMITS = [("0.75", Level.SOFT), ("0.80", Level.SNAPSHOT), ("0.90", Level.HARD)]
LIMITS.append(("0.95", Level.CRITICAL))


def exactly(fraction: str, num_ctx: int) -> int:
    """floor(fraction × num_ctx), computed exactly (no float in the way)."""
    return math.floor(Fraction(fraction) * num_ctx)


@pytest.mark.parametrize("num_ctx", [2048, 3482, 4096, 6963, 13926, 131072])
@pytest.mark.parametrize(("fraction", "level"), LIMITS)
def test_each_level_starts_exactly_at_its_threshold_by_default(num_ctx, fraction, level):
    # The configured defaults (config.py is their one home) and the policy's own agree.
    for policy in (GuardPolicy.from_settings(Settings().context), GuardPolicy()):
        at = exactly(fraction, num_ctx)
        assert policy.level(at, num_ctx) is level
        assert policy.level(at - 1, num_ctx) is Level(level - 1)


def conversation(turn_words: list[int], system: str = "Be brief.") -> Conversation:
    messages = []
    for i, words in enumerate(turn_words):
        messages.append(Message(id=f"u{i}", role="user", content="word " * words))
        messages.append(Message(id=f"a{i}", role="assistant", content="fine " * 10))
    return Conversation(system_prompt=system, messages=messages)


@pytest.mark.parametrize("num_ctx", [3482, 4096, 13926])
@pytest.mark.parametrize(
    ("fraction", "offset", "decision"),
    [
        ("0.75", 0, Send),
        ("0.80", 0, Send),
        ("0.90", -1, Send),
        ("0.90", 0, DropFirst),
        ("0.95", -1, DropFirst),
        ("0.95", 0, DropFirst),
        ("1", 0, DropFirst),
    ],
)
def test_before_send_drops_the_oldest_turns_from_exactly_the_hard_limit(
    num_ctx, fraction, offset, decision
):
    talk = conversation([40] * 8)
    used = exactly(fraction, num_ctx) + offset
    found = before_send(GuardPolicy(), talk, usage(used, num_ctx), num_ctx, reduced=False)
    assert type(found) is decision
    if isinstance(found, DropFirst):
        # Whole turns from the oldest, never the newest, enough to come back to 75 %.
        assert found.removed_ids[:2] == ("u0", "a0")
        assert "u7" not in found.removed_ids
        assert len(found.removed_ids) % 2 == 0
        sizes = {m.id: message_tokens(m) for m in talk.messages}
        total, gone = sum(sizes.values()), sum(sizes[i] for i in found.removed_ids)
        needed = (used - exactly("0.75", num_ctx)) / used
        assert gone / total >= needed, "enough goes to come back to the compression threshold"
        one_turn = sizes["u0"] + sizes["a0"]
        assert (gone - one_turn) / total < needed, "and not a turn more"
    # Once they went, the same request is sent: they go once — unless what is left is still
    # the whole context or more, which Ollama would refuse: then more go first.
    again = before_send(GuardPolicy(), talk, usage(used, num_ctx), num_ctx, reduced=True)
    assert type(again) is (DropFirst if used >= num_ctx else Send)


@pytest.mark.parametrize("num_ctx", [3482, 4096, 13926])
def test_a_message_alone_past_the_safe_limit_is_refused_exactly_there(num_ctx):
    alone = Conversation(messages=[Message(id="u1", role="user", content="x " * 9000)])
    safe = GuardPolicy().safe_limit(num_ctx)
    assert safe == exactly("0.90", num_ctx) - 1

    def only(tokens: int, base: int = 0) -> UsageChanged:
        return UsageChanged(
            used_tokens=tokens + base,
            limit_tokens=num_ctx,
            newest_tokens=tokens,
            base_tokens=base,
        )

    assert isinstance(before_send(GuardPolicy(), alone, only(safe), num_ctx, reduced=False), Send)
    refused = before_send(GuardPolicy(), alone, only(safe + 1), num_ctx, reduced=False)
    assert refused == Refuse(newest_tokens=safe + 1)
    # What every request carries counts against it too: the system prompt, the template's own.
    carried = before_send(GuardPolicy(), alone, only(safe - 9, 10), num_ctx, reduced=False)
    assert carried == Refuse(newest_tokens=safe - 9)

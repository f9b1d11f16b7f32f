from __future__ import annotations

import pytest

from actors import ChildSpec
from actors.testing import open_harness
from ollm.context.memory_guard import (
    GuardPolicy,
    GuardState,
    Level,
    MemoryGuardActor,
    on_memory,
    on_usage,
    threshold_tokens,
)
from ollm.events import (
    CompressRequested,
    CriticalLimitHit,
    HardLimitHit,
    LowMemory,
    MemoryRecovered,
    MemorySampled,
    ResizeRequested,
    SnapshotRequested,
    SoftLimitHit,
    UsageChanged,
    UserNotified,
)

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

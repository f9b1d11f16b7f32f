"""The context pool, the guard's actions and the VRAM monitor on the harness."""

from __future__ import annotations

import msgspec
import pytest

from actors import ChildSpec
from actors.testing import open_harness
from ollm.config import CompressionSettings, ContextSettings, Settings
from ollm.context.memory_guard import GuardPolicy
from ollm.context.vram_monitor import MonitorPolicy, VramMonitorActor
from ollm.core import core_specs
from ollm.events import (
    ChatRequested,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    ConversationState,
    KvTypeLearned,
    LowMemory,
    MemoryRecovered,
    MemorySampled,
    MemorySourceChanged,
    MessageAdded,
    ModelLoaded,
    ModelSelected,
    ResizeRequested,
    RunnerOptions,
    SessionOpened,
    SizeOption,
    UsageTrend,
    UserNotified,
    UserSubmitted,
)
from ollm.gpu.records import DeviceMemory, ProbeUnavailable, Reading
from ollm.memory import Architecture, GiB, MiB, ollama_kv_bytes
from ollm.profiles import choose_context, load_profiles
from ollm.providers.scripted import ScriptedProviderActor
from tests.fakes.ollama_server import FakeModel

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("ollama_rules")]

LLAMA = Architecture.from_model_info(FakeModel("llama3.1:8b").model_info())


def selected(size: int = 16384, auto: bool = True) -> ModelSelected:
    choice = choose_context(load_profiles().find("llama3.1:8b"), size)
    return ModelSelected(
        model="llama3.1:8b",
        size=choice.size,
        num_ctx=choice.num_ctx,
        options=choice.options,
        architecture=LLAMA,
        weights_bytes=4_900_000_000,
        auto_size=auto,
        kv_cache_type="f16",
        vram_buffer_bytes=512 * MiB,
    )


def gpu(free: float) -> MemorySampled:
    return MemorySampled(
        device="nvidia:0", total_bytes=16 * GiB, free_bytes=int(free * GiB), source="nvml"
    )


NO_COMPRESSION = Settings(context=ContextSettings(compression=CompressionSettings(enabled=False)))


def specs(provider=ScriptedProviderActor, settings: Settings | None = None):
    return [*core_specs(settings or Settings()), ChildSpec(name="provider", factory=provider)]


async def start(
    h, *, free: float | None = 12, model: ModelSelected | None = None, system="Be brief."
):
    await h.publish(SessionOpened(session_id="s", state=ConversationState(system_prompt=system)))
    if free is not None:
        await h.publish(gpu(free))
    await h.inject(model or selected())


async def test_auto_size_picks_the_largest_option_that_fits_free_memory():
    async with open_harness(*specs()) as h:
        await start(h, free=12)
        assert h.events(ContextSizeChosen)[-1].num_ctx == 13926
    async with open_harness(*specs()) as h:
        await start(h, free=7)
        chosen = h.events(ContextSizeChosen)[-1]
        assert (chosen.size, chosen.num_ctx) == (8192, 6963)
        assert "fits in" in chosen.reason
        assert any("num_ctx 6963" in n.text for n in h.events(UserNotified))


async def test_each_parallel_slot_the_server_runs_holds_a_whole_context():
    """Ollama allocates `num_ctx × OLLAMA_NUM_PARALLEL`: at 12 GiB free one slot takes
    the 16k option (the test above), four slots only the 8k one."""
    async with open_harness(*specs()) as h:
        await start(h, free=12, model=msgspec.structs.replace(selected(), parallel=4))
        chosen = h.events(ContextSizeChosen)[-1]
    assert (chosen.size, chosen.num_ctx) == (8192, 6963)


async def test_without_auto_size_or_memory_the_users_choice_stands():
    async with open_harness(*specs()) as h:
        await start(h, free=3, model=selected(auto=False))
        assert h.events(ContextSizeChosen)[-1].num_ctx == 13926
    async with open_harness(*specs()) as h:
        await start(h, free=None)
        assert h.events(ContextSizeChosen)[-1].reason == "your choice"


async def test_low_memory_shrinks_the_next_context_a_noisy_series_does_not_flap_and_it_recovers():
    async with open_harness(*specs()) as h:
        await start(h, free=12)
        for free in (0.6, 0.53, 0.52):  # near the 512 MiB threshold, never below
            await h.inject(gpu(free))
        assert h.events(LowMemory) == []
        await h.inject(gpu(0.4))
        assert len(h.events(LowMemory)) == 1
        assert h.events(ResizeRequested)[-1].reason == "low memory on nvidia:0 (409 MiB free)"
        assert h.events(ContextSizeChosen)[-1].num_ctx < 13926
        for free in (0.45, 0.6, 0.5, 0.7, 0.9, 0.45, 0.95):  # noise between the thresholds
            await h.inject(gpu(free))
        assert len(h.events(LowMemory)) == 1
        assert h.events(MemoryRecovered) == []
        await h.inject(gpu(1.5))
        assert len(h.events(MemoryRecovered)) == 1
        texts = [n.text for n in h.events(UserNotified)]
        assert any("memory is low on nvidia:0" in t for t in texts)
        assert any("memory recovered on nvidia:0" in t for t in texts)
        # The next request goes out with the smaller context.
        await h.inject(UserSubmitted(text="hello"))
        assert (
            h.events(ChatRequested)[-1].options.num_ctx == h.events(ContextSizeChosen)[-1].num_ctx
        )


class ManualLoad(ScriptedProviderActor):
    """Answers chats, but the test decides when the model has finished loading."""

    async def handle(self, event, ctx):
        if isinstance(event, ContextSizeChosen):
            return
        await super().handle(event, ctx)


async def test_turns_that_arrive_during_a_resize_wait_and_go_out_after_it_none_lost():
    async with open_harness(*specs(ManualLoad)) as h:
        await start(h)
        await h.inject(UserSubmitted(text="first"))
        await h.inject(UserSubmitted(text="second"))
        assert h.events(ChatRequested) == []
        await h.inject(ModelLoaded(model="llama3.1:8b", context_length=13926))
        replies = [e.message for e in h.events(MessageAdded) if e.message.role == "assistant"]
        assert len(replies) == 2
        requests = h.events(ChatRequested)
        assert [m.content for m in requests[1].messages if m.role == "user"] == ["first", "second"]
        assert all(r.options.num_ctx == 13926 for r in requests)


async def test_usage_trend_counts_tokens_per_turn_and_turns_left():
    async with open_harness(*specs()) as h:
        await start(h)
        for i in range(4):
            await h.inject(UserSubmitted(text=f"question {i}: " + "words " * 100))
        trend = h.events(UsageTrend)[-1]
        assert trend.tokens_per_turn > 100
        assert trend.turns_left > 10
        assert 0 < trend.percent < 20


def small(num_ctx: int = 2048) -> ModelSelected:
    return ModelSelected(model="m", size=num_ctx, num_ctx=num_ctx)


async def test_the_hard_limit_truncates_before_the_request_and_says_so():
    async with open_harness(*specs(settings=NO_COMPRESSION)) as h:
        await start(h, free=None, model=small())
        for i in range(20):
            await h.inject(UserSubmitted(text=f"part {i} " + "lorem ipsum dolor " * 25))
        reduced = h.envelopes(ContextReduced)
        assert reduced, "the hard limit acted"
        assert "hard limit" in reduced[0].event.reason
        assert any("hard limit" in n.text for n in h.events(UserNotified))
        before = [r.event for r in h.envelopes(ChatRequested) if r.seq < reduced[0].seq][-1]
        after = next(r.event for r in h.envelopes(ChatRequested) if r.seq > reduced[0].seq)
        assert len(after.messages) < len(before.messages)
        assert after.messages[0].role == "system", "the system prompt is never dropped"
        assert after.messages[-1].content.startswith("part "), "nor the message being answered"
        assert h.events(MessageAdded)[-1].message.role == "assistant", "every turn answered"


async def test_a_message_that_can_never_fit_is_refused_and_the_conversation_kept():
    async with open_harness(*specs()) as h:
        await start(h, free=None, model=small(4096))
        await h.inject(UserSubmitted(text="hello"))
        sent = len(h.events(ChatRequested))
        await h.inject(UserSubmitted(text="x " * 7900))  # far more than the whole context
        assert len(h.events(ChatRequested)) == sent, "never sent"
        reduced = h.events(ContextReduced)[-1]
        assert "too large for the 4096-token context" in reduced.reason
        assert h.events(ContextCleared) == []
        await h.inject(UserSubmitted(text="a normal question"))
        last = h.events(ChatRequested)[-1]
        assert [m.content for m in last.messages if m.role == "user"] == [
            "hello",
            "a normal question",
        ]


def test_can_allocate_and_safe_limit():
    policy = GuardPolicy()
    assert policy.safe_limit(13926) == 12532
    assert policy.can_allocate(12000, 532, 13926)
    assert not policy.can_allocate(12000, 533, 13926)


# --- the VRAM monitor ---------------------------------------------------------------------------


class FakeChain:
    def __init__(self, readings):
        self.readings = list(readings)

    def read(self):
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def reading(free_gib: float, source: str = "nvml") -> Reading:
    device = DeviceMemory(
        backend=source,
        index=0,
        name="GPU",
        total_bytes=16 * GiB,
        free_bytes=int(free_gib * GiB),
        used_bytes=0,
    )
    return Reading(devices=(device,), source=source)


async def test_the_monitor_samples_slowly_when_idle_fast_while_generating_and_only_on_change():
    chain = FakeChain([reading(10), reading(10.01), reading(9), reading(8), reading(7)])
    spec = ChildSpec(
        name="vram_monitor",
        factory=lambda: VramMonitorActor(
            chain, host="http://127.0.0.1:11434", policy=MonitorPolicy()
        ),
    )
    async with open_harness(spec) as h:
        await h.settle()
        assert [s.free_bytes for s in h.events(MemorySampled)] == [10 * GiB]
        assert h.expect(MemorySourceChanged).source == "nvml"
        await h.advance(30)  # 10.01 GiB: within the tolerance, not published
        assert len(h.events(MemorySampled)) == 1
        await h.advance(5)
        assert len(h.events(MemorySampled)) == 1, "idle: nothing before 30 s"
        await h.publish(
            ChatRequested(request_id="r1", model="m", messages=(), options=RunnerOptions(num_ctx=1))
        )
        await h.advance(10)  # generating: every 5 s
        assert [round(s.free_bytes / GiB) for s in h.events(MemorySampled)] == [10, 9, 8]


async def test_a_remote_server_is_sized_from_what_ollama_reports_and_the_user_is_told():
    spec = ChildSpec(
        name="vram_monitor",
        factory=lambda: VramMonitorActor(FakeChain([reading(10)]), host="http://gpu-box:11434"),
    )
    async with open_harness(spec) as h:
        await h.settle()
        changed = h.expect(MemorySourceChanged)
        assert changed.source == "ollama"
        assert "not on this machine" in changed.detail
        assert h.events(MemorySampled) == []


async def test_the_monitor_says_when_it_falls_back_to_another_source():
    chain = FakeChain([reading(10, "nvml"), reading(10, "nvidia-smi")])
    spec = ChildSpec(
        name="vram_monitor", factory=lambda: VramMonitorActor(chain, host="http://localhost:11434")
    )
    async with open_harness(spec) as h:
        await h.settle()
        await h.advance(30)
        assert [c.source for c in h.events(MemorySourceChanged)] == ["nvml", "nvidia-smi"]


__all__ = ("ProbeUnavailable", "SizeOption")


async def test_an_allocation_too_small_for_the_assumed_kv_type_shows_the_servers_own():
    """Sizing assumed f16 (Ollama's default); `/api/ps` then reports less than the weights
    and an f16 cache of the loaded context: the server runs q8_0, and the next sizing uses it."""
    arch = LLAMA
    q8 = ollama_kv_bytes(arch, 13926, "q8_0")
    async with open_harness(*specs()) as h:
        await start(h, free=12)
        await h.inject(
            ModelLoaded(
                model="llama3.1:8b",
                context_length=13926,
                size_bytes=4_900_000_000 + q8 + 300 * MiB,
            )
        )
        (learned,) = h.events(KvTypeLearned)
        assert (learned.assumed, learned.kv_cache_type) == ("f16", "q8_0")
        assert learned.source == "the /api/ps allocation (5.7 GiB at 13926 tokens)"
        # 1 GiB free beside the 5.8 GiB the model holds: the 16k option needs 5.8 GiB with
        # the q8_0 cache the allocation shows, 6.8 GiB with the f16 one sizing assumed.
        await h.publish(gpu(1.0))
        await h.inject(ResizeRequested(reason="memory changed", auto=True))
        chosen = h.events(ContextSizeChosen)[-1]
    assert (chosen.size, chosen.num_ctx) == (16384, 13926)


@pytest.mark.parametrize(("grown_by", "learned"), [("q8_0", ["q8_0"]), ("f16", [])])
async def test_two_loads_rule_out_a_type_whose_cache_would_have_grown_more(grown_by, learned):
    """Each allocation alone fits an f16 cache (large compute buffers), but between a load at
    6963 and one at 13926 tokens the allocation grew only by what a q8_0 cache grows: an f16
    cache would have grown more, and compute buffers do not shrink as the context grows."""
    compute = 2 * GiB
    weights = 4_900_000_000

    def load(context: int) -> ModelLoaded:
        size = weights + ollama_kv_bytes(LLAMA, context, grown_by) + compute
        return ModelLoaded(model="llama3.1:8b", context_length=context, size_bytes=size)

    async with open_harness(*specs()) as h:
        await start(h, free=12)
        await h.inject(load(6963))
        assert h.events(KvTypeLearned) == [], "one load alone fits every type"
        await h.inject(load(13926))
        assert [e.kv_cache_type for e in h.events(KvTypeLearned)] == learned
        if learned:
            assert "at 6963 tokens" in h.events(KvTypeLearned)[0].source


async def test_an_allocation_that_fits_the_assumed_type_changes_nothing():
    f16 = ollama_kv_bytes(LLAMA, 13926, "f16")
    async with open_harness(*specs()) as h:
        await start(h, free=12)
        await h.inject(
            ModelLoaded(
                model="llama3.1:8b", context_length=13926, size_bytes=4_900_000_000 + f16 + 1
            )
        )
        assert not [n for n in h.events(UserNotified) if "allocation" in n.text]

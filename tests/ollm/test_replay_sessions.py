from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from actors import ChildSpec, read_log, replay
from ollm.config import Settings
from ollm.context.memory_guard import GuardPolicy, MemoryGuardActor
from ollm.context.token_counter import TokenCounterActor
from ollm.core import core_specs, record_scripted, replay_log
from ollm.events import (
    AnyEvent,
    CompressRequested,
    ConversationState,
    MessageAdded,
    ModelSelected,
    SessionOpened,
    SoftLimitHit,
    UsageChanged,
    UserSubmitted,
    is_input,
)

pytestmark = pytest.mark.anyio
GOLDEN = Path(__file__).parents[1] / "golden"


def chat_inputs(turns: int, num_ctx: int = 2048) -> list[tuple[float, object]]:
    opening: list[tuple[float, object]] = [
        (0.0, SessionOpened(session_id="t", state=ConversationState(system_prompt="Be brief."))),
        (0.0, ModelSelected(model="m", size=num_ctx, num_ctx=num_ctx)),
    ]
    return opening + [
        (1.0 + 1.5 * i, UserSubmitted(text=f"message {i} " + "lorem ipsum " * (i % 9 + 3)))
        for i in range(turns)
    ]


async def test_a_session_replayed_100_times_derives_identical_events(tmp_path):
    path = tmp_path / "events.jsonl"
    await record_scripted(path, Settings(), chat_inputs(60), seed="seed-1")
    log = read_log(path, AnyEvent)
    assert any(isinstance(e.event, CompressRequested) for e in log.envelopes)
    first = None
    for _ in range(100):
        result = await replay_log(log)
        assert result.divergence is None
        events = [(e.source, e.event) for e in result.envelopes]
        if first is None:
            first = events
        assert events == first


async def test_a_deliberately_changed_policy_reports_the_first_divergence(tmp_path):
    path = tmp_path / "events.jsonl"
    settings = Settings()
    await record_scripted(path, settings, chat_inputs(60), seed="seed-2")
    log = read_log(path, AnyEvent)
    eager = replace(GuardPolicy.from_settings(settings.context), compress_at=0.70)
    specs = [s for s in core_specs(settings) if s.name != "memory_guard"]
    specs.append(ChildSpec(name="memory_guard", factory=lambda: MemoryGuardActor(eager)))
    result = await replay(log, specs, is_input=is_input)
    divergence = result.divergence
    assert divergence is not None
    assert divergence.expected is None, "the recording had no event where the eager guard fires"
    assert divergence.actual is not None
    assert isinstance(divergence.actual.event, SoftLimitHit)
    assert divergence.actual.event.threshold == 0.70
    recorded_soft = next(e for e in log.envelopes if isinstance(e.event, SoftLimitHit))
    assert divergence.seq < recorded_soft.seq
    assert "replay diverged at seq" in divergence.describe()


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.jsonl")), ids=lambda p: p.stem)
async def test_golden_logs_replay_without_divergence(path):
    log = read_log(path, AnyEvent)
    assert log.torn_line == 0
    result = await replay_log(log)
    assert result.divergence is None, result.divergence.describe()
    assert result.derived > 0


class GreedyCounter(TokenCounterActor):
    """A changed counting policy: one token more per message."""

    async def handle(self, event, ctx):
        if isinstance(event, MessageAdded):
            self.accounting.correction += 1
        await super().handle(event, ctx)


async def test_a_changed_counting_policy_shows_both_events_at_the_divergence(tmp_path):
    path = tmp_path / "events.jsonl"
    await record_scripted(path, Settings(), chat_inputs(5), seed="seed-3")
    log = read_log(path, AnyEvent)
    specs = [s for s in core_specs(Settings()) if s.name != "token_counter"]
    specs.append(ChildSpec(name="token_counter", factory=GreedyCounter))
    divergence = (await replay(log, specs, is_input=is_input)).divergence
    assert divergence is not None
    first_message = next(e for e in log.envelopes if isinstance(e.event, MessageAdded))
    first_usage = next(
        e
        for e in log.envelopes
        if isinstance(e.event, UsageChanged) and e.causation == first_message.seq
    )
    assert divergence.seq == first_usage.seq
    assert divergence.expected == first_usage
    assert divergence.actual is not None
    assert divergence.actual.event == msgspec.structs.replace(
        first_usage.event, used_tokens=first_usage.event.used_tokens + 1
    )
    assert divergence.describe().startswith(f"replay diverged at seq {first_usage.seq}: expected ")
